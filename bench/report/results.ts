/** The shape of one run's results (bench/results/latest.json), shared by the report writers. */
import type { MachineInfo } from "../lib/proc.ts";
import type { Plan } from "../plan.ts";
import type { ConnRow } from "../scenarios/connections.ts";
import type { Row, Skip } from "../scenarios/matrix.ts";

export interface Target {
  readonly name: string;
  readonly holds: boolean | undefined;
  readonly measured: string;
}

export interface Ratio {
  readonly name: string;
  readonly value: number;
}

export interface Results {
  readonly at: string;
  readonly seconds: number;
  readonly machine: MachineInfo & { readonly free: string; readonly load?: { readonly before: readonly number[]; readonly after: readonly number[] } };
  readonly plan: Plan;
  readonly fdLimit: { readonly soft: number; readonly hard: number; readonly note?: string };
  readonly route: { readonly rows: readonly Row[]; readonly skipped: readonly Skip[] };
  readonly mqtt: { readonly rows: readonly Row[]; readonly skipped: readonly Skip[] };
  readonly connections: { readonly rows: readonly ConnRow[]; readonly cap: number };
  readonly ratios: readonly Ratio[];
  readonly targets: readonly Target[];
}
