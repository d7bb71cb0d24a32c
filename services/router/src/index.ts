export {
  loadRouterConfig,
  routerConfig,
  routerConfigSchema,
  ROUTER_ENV_PREFIX,
  type RouterConfig,
} from "./config";
export { startRouter, type Router } from "./router";
