import { Firestore } from "@google-cloud/firestore";

/** How to reach Firestore when no client is passed in. */
export interface FirestoreConnectionOptions {
  readonly projectId: string;
  /** `host:port` of the Firestore emulator; unset means Google's service with Application Default Credentials. */
  readonly emulatorHost?: string;
  /** Default "(default)". */
  readonly databaseId?: string;
}

/** Opens a client: on the emulator without credentials, else with Application Default Credentials. */
export function openFirestore(conn: FirestoreConnectionOptions): Firestore {
  const base = { projectId: conn.projectId, databaseId: conn.databaseId, ignoreUndefinedProperties: true };
  if (conn.emulatorHost === undefined) return new Firestore(base);
  // A universe domain given up front keeps the auth library from probing for GCE metadata (seconds, and warnings).
  return new Firestore({ ...base, host: conn.emulatorHost, ssl: false, universeDomain: "googleapis.com" });
}

/**
 * A Firestore document id for any string: `%` and `/` are percent-escaped, and the ids Firestore
 * refuses ("." , "..", "__…__") get their first character escaped. Injective: `%` only ever starts an escape.
 */
export function docId(value: string): string {
  const escaped = value.replace(/%/g, "%25").replace(/\//g, "%2F");
  if (escaped === "") return "%";
  if (escaped === "." || escaped === ".." || /^__.*__$/.test(escaped)) {
    return `%${escaped.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}${escaped.slice(1)}`;
  }
  return escaped;
}
