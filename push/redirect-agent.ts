import https from "node:https";
import { isIP } from "node:net";
import type { Duplex } from "node:stream";

export interface RedirectAgentOptions {
  /** Trust for the stand-in's certificate (tests); otherwise the system store and NODE_EXTRA_CA_CERTS. */
  readonly ca?: string | Buffer;
  readonly maxSockets?: number;
}

/**
 * An HTTPS agent that opens every connection to `endpoint`, whatever host a request names: for
 * testing a client library whose hosts are fixed (firebase-admin: fcm.googleapis.com and
 * oauth2.googleapis.com) against a local stand-in. The certificate is verified against the
 * endpoint's host; the request keeps its Host header, so the stand-in sees which service was meant.
 */
export function createRedirectAgent(endpoint: URL, options: RedirectAgentOptions = {}): https.Agent {
  return new RedirectAgent(endpoint, options);
}

class RedirectAgent extends https.Agent {
  readonly #host: string;
  readonly #port: number;

  constructor(endpoint: URL, options: RedirectAgentOptions) {
    super({
      keepAlive: true,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      ...(options.maxSockets !== undefined ? { maxSockets: options.maxSockets } : {}),
    });
    this.#host = endpoint.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = Number(endpoint.port || 443);
  }

  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    // An empty servername sends no SNI and makes TLS check the certificate against `host` (an IP is not a valid SNI name).
    const servername = isIP(this.#host) ? "" : this.#host;
    return super.createConnection({ ...options, host: this.#host, hostname: this.#host, port: this.#port, servername }, callback);
  }
}
