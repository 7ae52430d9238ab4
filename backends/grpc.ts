/** gRPC status codes the Google clients (Pub/Sub, Firestore) report on their errors' `code`. */
export const GRPC_ALREADY_EXISTS = 6;

/** The gRPC status code of a Google client error, if it has one. */
export function grpcCode(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "number" ? err.code : undefined;
}
