#!/usr/bin/env node
import { runService } from "@codeq/server-kit";
import { loadRouterConfig } from "./config";
import { startRouter } from "./router";

runService("codeq-router", loadRouterConfig, () => "router", startRouter);
