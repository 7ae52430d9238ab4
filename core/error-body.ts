import { Type, type Static } from "@sinclair/typebox";
import { ERRORS, type ErrorCode } from "./errors.ts";

/**
 * The one error body of every HTTP error: `RoutingError.toBody()` produces it, the OpenAPI document
 * embeds this very object. The code is a closed set (the registry); the message names fields, never values.
 */
export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.Union(
          (Object.keys(ERRORS) as ErrorCode[]).map((code) => Type.Literal(code)),
          { description: "the contract's error code (docs/protocol.md: Error codes)" },
        ),
        message: Type.String({ description: "a human sentence; names fields, never values" }),
        retryAfterMs: Type.Optional(
          Type.Integer({
            minimum: 0,
            description:
              "RATE_LIMITED, OVERLOADED, MAILBOX_FULL: milliseconds until a retry can succeed (the HTTP `Retry-After` header has it in seconds, rounded up)",
          }),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { $id: "ErrorBody", additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBodySchema>;
