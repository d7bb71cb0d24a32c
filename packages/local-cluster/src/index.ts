export {
  startLocalCluster,
  type LocalCluster,
  type LocalClusterOptions,
  type LocalShard,
} from "./local-cluster";
export {
  ServiceProcess,
  serviceArgs,
  serviceEntry,
  serviceNodeFlags,
  SERVICE_NODE_FLAGS,
  REPO_ROOT,
} from "./service-process";
