import type { PushQueue } from "../backends/push-queue.ts";
import { envName, type Config } from "../config/schema.ts";
import { createApnsSender } from "./apns-sender.ts";
import { createFcmSender } from "./fcm-sender.ts";
import type { PushSender } from "./sender.ts";

export type PushConfig = Pick<
  Config,
  "fcmServiceAccountFile" | "fcmEndpoint" | "apnsKeyFile" | "apnsKeyId" | "apnsTeamId" | "apnsTopic" | "apnsProduction" | "apnsHost" | "apnsPort" | "pushConcurrency"
>;

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
      createApnsSender({ keyFile: apnsKeyFile, keyId: apnsKeyId, teamId: apnsTeamId, topic: apnsTopic, production: config.apnsProduction, host: config.apnsHost, port: config.apnsPort }),
    );
  } else {
    const unset = (["apnsKeyFile", "apnsKeyId", "apnsTeamId", "apnsTopic"] as const).filter((k) => config[k] === undefined).map(envName);
    log.info(`push: APNs is off (${unset.join(", ")} not set)`);
  }
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
