import { existsSync, readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file lives in test/helpers/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export function readDoc(path: string): string {
  return readFileSync(resolve(ROOT, path), "utf8");
}

/** Markdown without its fenced code blocks (code is shown, not linked). */
function withoutCode(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
}

/** Every link target of a Markdown text: inline links and images, reference definitions, autolinks, bare URLs. */
export function linkTargets(markdown: string): string[] {
  const text = withoutCode(markdown);
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  const defs = [...text.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => m[1]!);
  const auto = [...text.matchAll(/<([a-z][a-z0-9+.-]*:[^>\s]+)>/gi)].map((m) => m[1]!);
  const bare = [...text.matchAll(/\b(?:https?|ftp):\/\/[^\s)>\]]+/gi)].map((m) => m[0]);
  return [...new Set([...inline, ...defs, ...auto, ...bare])];
}

/**
 * Why a link of the file at `from` leaves the repository or points nowhere, or undefined when it
 * names a file (or an anchor) inside it.
 */
export function linkProblem(from: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) return `${target}: a link outside the repository`;
  if (target.startsWith("#")) return undefined;
  const path = decodeURIComponent(target.split("#")[0]!);
  if (path.startsWith("/")) return `${target}: an absolute path`;
  const file = resolve(ROOT, dirname(from), path);
  if (relative(ROOT, file).startsWith("..")) return `${target}: leaves the repository`;
  if (!existsSync(file)) return `${target}: no such file`;
  return undefined;
}

/** The text between `<!-- name:start -->` and `<!-- name:end -->`. */
export function section(markdown: string, name: string): string {
  const match = new RegExp(`<!-- ${name}:start -->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(markdown);
  if (!match) throw new Error(`no ${name} section`);
  return match[1]!;
}
