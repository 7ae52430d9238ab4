/** A URN of the contract: `urn:<namespace>:<type>:<id>`, four non-empty colon-separated parts. */
export type Urn = string & { readonly __urn: unique symbol };

const PART = /^[^:\s]+$/;
const MAX_URN_LENGTH = 256;

export function isUrn(value: string): value is Urn {
  if (value.length > MAX_URN_LENGTH) return false;
  const parts = value.split(":");
  return parts.length === 4 && parts[0] === "urn" && parts.every((p) => PART.test(p));
}

/**
 * The authenticated identity from a JWT `sub`: a bare id (no colon) becomes `urn:sm:user:<id>`;
 * anything else must already be a valid URN. Returns undefined for a malformed one.
 */
export function identityFromSubject(sub: string): Urn | undefined {
  const candidate = sub.includes(":") ? sub : `urn:sm:user:${sub}`;
  return isUrn(candidate) ? candidate : undefined;
}
