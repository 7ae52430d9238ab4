/**
 * The ceiling the design allows for MQTT: bare aedes (the service's own version, package.json),
 * relaying publisher to subscriber with its default in-memory persistence, no auth, no storage,
 * plain TCP. What the service adds on top (JWT, durable ingress, mailbox) is the rest of the gap.
 * `bench server ready: port=N` on stdout when listening; SIGTERM exits.
 */
import { createServer } from "node:net";
import { Aedes } from "aedes";

const broker = await Aedes.createBroker();
const server = createServer((socket) => broker.handle(socket));
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  console.log(`bench server ready: port=${port}`);
});
process.once("SIGTERM", () => {
  server.close();
  broker.close(() => process.exit(0));
});
