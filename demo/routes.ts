import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { mintDevToken } from "../auth/mint.ts";
import { parseJson } from "../core/envelope.ts";
import { asRoutingError, RoutingError } from "../core/errors.ts";
import type { HttpRequest, HttpResponse } from "../gateway/engine.ts";
import { errorResponse } from "../gateway/http-routes.ts";
import { demoPage, DEMO_CSP } from "./page.ts";

export interface DemoOptions {
  /** The HS256 secret tokens are minted with; without one the page loads but cannot sign in. */
  readonly secret: string | undefined;
  /** Lifetime of a demo token (the SDK refreshes it in-band before it runs out). */
  readonly tokenTtl?: string;
}

/** Demo identities live in their own namespace: a demo token can never name a real user. */
export const DEMO_NAMESPACE = "urn:demo:user:";
const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

let bundle: Promise<string> | undefined;

/** The browser code (demo/app.ts with the SDK from client/src), bundled once on first request by esbuild, in memory. */
function appBundle(): Promise<string> {
  bundle ??= (async () => {
    const { build } = await import("esbuild");
    const result = await build({
      // Beside this file when run from the sources; from dist/demo/ (npm start) the sources are two levels up.
      entryPoints: [
        [new URL("./app.ts", import.meta.url), new URL("../../demo/app.ts", import.meta.url)].map((u) => fileURLToPath(u)).find((f) => existsSync(f)) ??
          fileURLToPath(new URL("./app.ts", import.meta.url)),
      ],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      legalComments: "none",
    });
    return result.outputFiles[0].text;
  })();
  bundle.catch(() => (bundle = undefined));
  return bundle;
}

/**
 * The demo's routes, served only when ROUTING_DEMO is on: GET /demo (the page), GET /demo/app.js
 * (its script), POST /demo/token `{"name": "alice"}` -> `{"token", "identity"}`. The token route is
 * the demo's sign-in: anyone who can reach it gets a short-lived token for `urn:demo:user:<name>`,
 * which is why the demo is off unless enabled (on by default only in the embedded default with the
 * dev secret) and why demo identities have a namespace of their own.
 * Answers undefined for every other path.
 */
export function createDemoRoutes(options: DemoOptions) {
  const ttl = options.tokenTtl ?? "10m";
  return async (req: HttpRequest): Promise<HttpResponse | undefined> => {
    if (req.path !== "/demo" && !req.path.startsWith("/demo/")) return undefined;
    try {
      if (req.path === "/demo" && req.method === "GET") {
        return {
          status: 200,
          headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": DEMO_CSP, "cache-control": "no-store" },
          body: demoPage(),
        };
      }
      if (req.path === "/demo/app.js" && req.method === "GET") {
        return { status: 200, headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" }, body: await appBundle() };
      }
      if (req.path === "/demo/token" && req.method === "POST") {
        if (!options.secret) throw new RoutingError("NOT_FOUND", "demo sign-in needs an HS256 secret (the dev secret or ROUTING_JWT_SECRET)");
        const body = parseJson(req.body) as { name?: unknown } | null;
        const name = body?.name;
        if (typeof name !== "string" || !NAME.test(name)) throw new RoutingError("INVALID_REQUEST", 'body must be {"name": "<1-32 of a-z, 0-9, ->"}');
        const identity = DEMO_NAMESPACE + name;
        const token = await mintDevToken(options.secret, identity, { expiresIn: ttl });
        return { status: 200, headers: { "content-type": "application/json", "cache-control": "no-store" }, body: JSON.stringify({ token, identity }) };
      }
      throw new RoutingError("NOT_FOUND", `no demo route ${req.method} ${req.path}`);
    } catch (err) {
      return errorResponse(asRoutingError(err));
    }
  };
}
