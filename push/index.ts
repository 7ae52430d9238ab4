import type { PushQueue } from "../backends/push-queue.ts";
import { isEmbeddedDefault } from "../config/embedded.ts";
import { envName, type Config } from "../config/schema.ts";
import { createApnsSender } from "./apns-sender.ts";
import { loadOrCreateDevVapidKeys, type VapidKeys } from "./dev-vapid.ts";
import { createWebPushSender } from "./webpush-sender.ts";
import { createFcmSender } from "./fcm-sender.ts";
import type { PushSender } from "./sender.ts";

export type PushConfig = Pick<
  Config,
  | "fcmServiceAccountFile"
  | "fcmEndpoint"
  | "apnsKeyFile"
  | "apnsKeyId"
  | "apnsTeamId"
  | "apnsTopic"
  | "apnsProduction"
  | "apnsHost"
  | "apnsPort"
  | "pushConcurrency"
> &
  VapidConfig;

export type VapidConfig = Pick<
  Config,
  "vapidPublicKey" | "vapidPrivateKey" | "vapidSubject" | "dataDir" | "bus" | "store" | "deviceStore" | "presence" | "signals" | "transporter"
>;

/**
 * The VAPID key pair for Web Push: both settings, or (neither set, embedded default) the dev pair
 * in the data dir; undefined means Web Push is off. Exactly one key set stops start-up.
 */
export function resolveVapid(config: VapidConfig): (VapidKeys & { dev?: { path: string; created: boolean } }) | undefined {
  const { vapidPublicKey: publicKey, vapidPrivateKey: privateKey } = config;
  if (publicKey !== undefined && privateKey !== undefined) return { publicKey, privateKey };
  if (publicKey !== undefined || privateKey !== undefined) {
    throw new Error(`${envName("vapidPublicKey")} and ${envName("vapidPrivateKey")} go together: set both or neither`);
  }
  if (!isEmbeddedDefault(config)) return undefined;
  const dev = loadOrCreateDevVapidKeys(config.dataDir);
  return { publicKey: dev.publicKey, privateKey: dev.privateKey, dev: { path: dev.path, created: dev.created } };
}

/** The push service's settings from the config. A stop waits a quarter of the shutdown budget for the batch in progress. */
export function pushSettings(config: Pick<Config, "pushCollapseSeconds" | "pushMaxAttempts" | "pushRetryBaseMs" | "pushConcurrency" | "shutdownTimeoutMs">) {
  return {
    collapseMs: config.pushCollapseSeconds * 1000,
    maxAttempts: config.pushMaxAttempts,
    retryBaseMs: config.pushRetryBaseMs,
    concurrency: config.pushConcurrency,
    drainTimeoutMs: Math.floor(config.shutdownTimeoutMs / 4),
  };
}

/**
 * The senders the configuration enables. A platform without its credentials is off, said in one
 * log line at start; credentials that are set but unreadable stop start-up (thrown).
 */
export function createPushSenders(config: PushConfig, log: { info(msg: string): void }): PushSender[] {
  const senders: PushSender[] = [];
  if (config.fcmServiceAccountFile !== undefined) {
    senders.push(createFcmSender({ serviceAccountFile: config.fcmServiceAccountFile, endpoint: config.fcmEndpoint, maxSockets: config.pushConcurrency }));
  } else log.info(`push: FCM is off (${envName("fcmServiceAccountFile")} not set)`);
  const { apnsKeyFile, apnsKeyId, apnsTeamId, apnsTopic } = config;
  if (apnsKeyFile !== undefined && apnsKeyId !== undefined && apnsTeamId !== undefined && apnsTopic !== undefined) {
    senders.push(
      createApnsSender({
        keyFile: apnsKeyFile,
        keyId: apnsKeyId,
        teamId: apnsTeamId,
        topic: apnsTopic,
        production: config.apnsProduction,
        host: config.apnsHost,
        port: config.apnsPort,
      }),
    );
  } else {
    const unset = (["apnsKeyFile", "apnsKeyId", "apnsTeamId", "apnsTopic"] as const).filter((k) => config[k] === undefined).map(envName);
    log.info(`push: APNs is off (${unset.join(", ")} not set)`);
  }
  const vapid = resolveVapid(config);
  if (vapid !== undefined) {
    senders.push(
      createWebPushSender({ publicKey: vapid.publicKey, privateKey: vapid.privateKey, subject: config.vapidSubject, maxSockets: config.pushConcurrency }),
    );
    if (vapid.dev) log.info(`push: Web Push uses the dev VAPID key pair in ${vapid.dev.path} (public key ${vapid.publicKey})`);
  } else log.info(`push: Web Push is off (${envName("vapidPublicKey")} and ${envName("vapidPrivateKey")} not set)`);
  return senders;
}

/**
 * The queue the router writes to, calling `signal` after enqueues (at most once per event-loop
 * turn) so the push actor wakes at once rather than at its next poll.
 */
export function signalOnEnqueue(queue: PushQueue, signal: () => void): PushQueue {
  let scheduled = false;
  return {
    async enqueue(due) {
      await queue.enqueue(due);
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        signal();
      });
    },
    pending: (limit) => queue.pending(limit),
    complete: (seqs) => queue.complete(seqs),
    count: () => queue.count(),
    deadLetter: (seq, reason) => queue.deadLetter(seq, reason),
    deadLetters: (limit) => queue.deadLetters(limit),
    deadLetterCount: () => queue.deadLetterCount(),
    purge: (recipientId) => queue.purge(recipientId),
    close: () => queue.close(),
  };
}
