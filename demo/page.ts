/** The page's CSP: its own script and style only; sockets to this origin. */
export const DEMO_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/**
 * The chat page: `?me=<name>&peer=<name>` (defaults alice and bob). Everything happens in
 * /demo/app.js; the page is static markup.
 */
export function demoPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Routing Service demo: end-to-end-encrypted chat</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f4f5f8; }
  body { max-width: 640px; margin: 24px auto; padding: 0 16px; }
  header { display: flex; justify-content: space-between; align-items: baseline; gap: 12px; flex-wrap: wrap; }
  h1 { font-size: 1.2rem; margin: 0; }
  .pill { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: .8rem; background: #dde1ea; }
  .pill[data-state="online"], .pill[data-key="ready"] { background: #c9efd6; }
  .pill[data-state="offline"] { background: #f6d2d2; }
  .pill[data-state="connecting"], .pill[data-key="waiting"] { background: #f7e7b9; }
  #log { list-style: none; padding: 12px; margin: 16px 0; min-height: 240px; background: #fff; border-radius: 12px; box-shadow: 0 1px 3px #0002; }
  #log li { margin: 6px 0; display: flex; flex-direction: column; }
  #log li[data-dir="out"] { align-items: flex-end; }
  #log .bubble { max-width: 80%; padding: 6px 12px; border-radius: 14px; background: #e8ebf2; white-space: pre-wrap; word-break: break-word; }
  #log li[data-dir="out"] .bubble { background: #3b6ef5; color: #fff; }
  #log .status { font-size: .7rem; color: #667; margin-top: 2px; }
  form { display: flex; gap: 8px; }
  input { flex: 1; padding: 8px 12px; border-radius: 10px; border: 1px solid #c7ccd8; font: inherit; }
  button { padding: 8px 16px; border-radius: 10px; border: 0; background: #3b6ef5; color: #fff; font: inherit; }
  button:disabled { background: #9aa6c4; }
  .note { font-size: .8rem; color: #556; }
</style>
</head>
<body>
<header>
  <h1>Chat as <span id="me"></span> with <span id="peer"></span></h1>
  <span><span class="pill" id="state" data-state="offline">offline</span> <span class="pill" id="key" data-key="waiting">waiting for peer's key</span></span>
</header>
<ul id="log" aria-live="polite"></ul>
<form id="compose">
  <input id="text" autocomplete="off" placeholder="Message (end-to-end encrypted)" maxlength="2000">
  <button id="send" type="submit" disabled>Send</button>
</form>
<p class="note">ECDH P-256 + AES-GCM per message in this browser (WebCrypto); the service only ever stores and forwards ciphertext.
Status: sent (the service durably accepted it), delivered (the peer decrypted it), read (the peer acked it).
Open <a id="other" href="#">the other side</a> in another window.</p>
<script type="module" src="/demo/app.js"></script>
</body>
</html>
`;
}
