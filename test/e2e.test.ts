import { describeRoutingE2E } from "./e2e/routing.suite.ts";

// One suite, both gateway engines.
describeRoutingE2E("uws");
describeRoutingE2E("ws");
