/**
 * aedes (through mqtt-packet) buffers a packet whole, whatever size its fixed header declares (up
 * to 256 MB), before anything can look at it, even before CONNECT is authenticated. This guard
 * reads the fixed headers of the byte stream as it goes by and reports the first packet declaring
 * more than `maxBytes`, so the connection is dropped before the buffering happens.
 *
 * Feed it every chunk of the stream, in order. After it reported once it ignores further input.
 */
export function packetSizeGuard(maxBytes: number, onTooLarge: (declaredBytes: number) => void): (chunk: Buffer) => void {
  /** "type": expecting a fixed header's first byte; "length": inside its varint; "body": skipping. */
  let state: "type" | "length" | "body" = "type";
  let remaining = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let tripped = false;

  const trip = (declared: number): void => {
    tripped = true;
    onTooLarge(declared);
  };

  return (chunk) => {
    let i = 0;
    while (i < chunk.length && !tripped) {
      if (state === "body") {
        const skip = Math.min(remaining, chunk.length - i);
        i += skip;
        remaining -= skip;
        if (remaining === 0) state = "type";
        continue;
      }
      const byte = chunk[i++];
      if (state === "type") {
        state = "length";
        remaining = 0;
        multiplier = 1;
        lengthBytes = 0;
        continue;
      }
      remaining += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      lengthBytes++;
      if (byte & 0x80) {
        // The remaining length is at most 4 bytes (MQTT 3.1.1, 2.2.3); a fifth is malformed.
        if (lengthBytes >= 4) trip(Number.POSITIVE_INFINITY);
        continue;
      }
      if (remaining > maxBytes) trip(remaining);
      else state = remaining === 0 ? "type" : "body";
    }
  };
}
