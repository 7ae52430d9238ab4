// Headers of a record on the ingress subject.
/** When the record was first enqueued (epoch ms): kept by retry copies and replays. */
export const ENQUEUED_AT = "Routing-Enqueued-At";
/** Failed attempts before this copy (a nack republishes the record with the count). */
export const FAILURES = "Routing-Failures";
/** When the last attempt failed (epoch ms): the receiving instance's backoff counts from it. */
export const FAILED_AT = "Routing-Failed-At";
