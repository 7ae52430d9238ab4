import { describeAuthFrame } from "./e2e/auth-frame.suite.ts";

// One suite, both gateway engines.
describeAuthFrame("uws");
describeAuthFrame("ws");
