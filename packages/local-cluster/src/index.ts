export {
  startLocalCluster,
  type LocalCluster,
  type LocalClusterOptions,
  type LocalShard,
} from "./local-cluster";
export { ServiceProcess, serviceEntry, REPO_ROOT } from "./service-process";
