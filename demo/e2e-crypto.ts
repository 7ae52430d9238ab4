/// <reference lib="dom" />
/**
 * The demo's end-to-end encryption, in the browser with WebCrypto only (no library):
 * - each user has a static ECDH P-256 key pair (the private key never leaves WebCrypto: not extractable);
 * - per message, the sender makes an ephemeral P-256 pair, agrees a secret with the recipient's
 *   static public key, derives an AES-256-GCM key with HKDF-SHA-256 (salt = the 12-byte IV,
 *   info = "routing-demo v1") and encrypts; `encryptedSymmetricKey` carries the ephemeral public
 *   key, `encryptedData` IV || ciphertext (both base64);
 * - the recipient agrees the same secret from its static private key and the ephemeral public key.
 * The service sees base64 of random-looking bytes and a public key, nothing else.
 */
const INFO = new TextEncoder().encode("routing-demo v1");

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export interface KeyIdentity {
  readonly privateKey: CryptoKey;
  /** Raw uncompressed public key, base64: what the peer needs. */
  readonly publicKey: string;
}

export async function newIdentity(): Promise<KeyIdentity> {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: toBase64(raw) };
}

function importPublic(b64: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", fromBase64(b64), { name: "ECDH", namedCurve: "P-256" }, false, []);
}

async function messageKey(privateKey: CryptoKey, publicKey: CryptoKey, iv: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: publicKey }, privateKey, 256);
  const hkdf = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: iv, info: INFO }, hkdf, { name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
}

/** Encrypts `plaintext` to the holder of `recipientPublicKey` (base64 raw P-256). */
export async function seal(plaintext: string, recipientPublicKey: string): Promise<{ encryptedData: string; encryptedSymmetricKey: string }> {
  const ephemeral = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await messageKey(ephemeral.privateKey, await importPublic(recipientPublicKey), iv);
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode(plaintext)));
  const out = new Uint8Array(iv.length + ciphertext.length);
  out.set(iv);
  out.set(ciphertext, iv.length);
  const ephemeralRaw = new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey));
  return { encryptedData: toBase64(out), encryptedSymmetricKey: toBase64(ephemeralRaw) };
}

/** Decrypts what `seal` made for `me`; rejects if it was not for this key or was altered. */
export async function open(sealed: { encryptedData: string; encryptedSymmetricKey: string }, me: KeyIdentity): Promise<string> {
  const data = fromBase64(sealed.encryptedData);
  const iv = data.slice(0, 12);
  const key = await messageKey(me.privateKey, await importPublic(sealed.encryptedSymmetricKey), iv);
  const plaintext = await crypto.subtle.decrypt({ name: "AES-GCM", iv }, key, data.slice(12));
  return new TextDecoder().decode(plaintext);
}
