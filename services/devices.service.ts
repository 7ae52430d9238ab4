import type { Context, ServiceSchema } from "moleculer";
import type { DeviceStore, PushPlatform } from "../backends/device-store.ts";
import type { Urn } from "../core/urn.ts";
import { mapped } from "./errors.ts";
import { urnParam as urn } from "./mailbox.service.ts";

export function createDevicesService(deps: { devices: DeviceStore }): ServiceSchema {
  return {
    name: "devices",
    actions: {
      register: {
        params: { urn, token: { type: "string", min: 1, max: 4096 }, platform: { type: "enum", values: ["fcm", "apns"] } },
        handler: (ctx: Context<{ urn: Urn; token: string; platform: PushPlatform }>) =>
          mapped(async () => {
            await deps.devices.register(ctx.params.urn, ctx.params.token, ctx.params.platform);
            return { ok: true };
          }),
      },
      unregister: {
        params: { urn, token: { type: "string", min: 1, max: 4096 } },
        handler: (ctx: Context<{ urn: Urn; token: string }>) =>
          mapped(async () => {
            await deps.devices.unregister(ctx.params.urn, ctx.params.token);
            return { ok: true };
          }),
      },
      list: {
        params: { urn },
        handler: (ctx: Context<{ urn: Urn }>) =>
          mapped(async () =>
            (await deps.devices.list(ctx.params.urn)).map((d) => ({
              platform: d.platform,
              registeredAt: new Date(d.registeredAt).toISOString(),
              token: d.token,
            })),
          ),
      },
    },
  };
}
