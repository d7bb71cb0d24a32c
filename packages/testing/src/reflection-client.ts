import { createClient, type Channel } from "nice-grpc";
import { ServerReflectionService } from "nice-grpc-server-reflection";
import { ServerReflectionRequest } from "nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb";

/** Asks a server's reflection service (grpc.reflection.v1) which services it exposes. */
export async function listReflectedServices(channel: Channel): Promise<string[]> {
  const client = createClient(ServerReflectionService, channel);
  async function* one() {
    yield new ServerReflectionRequest().setListServices("*");
  }
  for await (const res of client.serverReflectionInfo(one())) {
    return (res.getListServicesResponse()?.getServiceList() ?? []).map((s) => s.getName()).sort();
  }
  return [];
}
