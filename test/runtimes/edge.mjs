// An edge function's world, made inside Node or Deno, and requests to a handler run in it.
// An entry module calls runEdge(() => import('./worker.mjs')) (a literal import, which Deno
// loads with no permission), and is run as
//   node --import ./test/runtimes/no-node-builtins.mjs entry.mjs < input
//   deno run --no-prompt entry.mjs < input      (no permissions at all)
// Like an isolate on Cloudflare Workers, the handler gets no file system (Node: every node:
// import is refused by the loader hooks; Deno: no permission), no fetch, no SharedArrayBuffer,
// no `process`, and cannot compile WebAssembly at run time (WebAssembly.compile, instantiate from
// bytes and new WebAssembly.Module all throw). The platform (this script) compiled the kernels
// beforehand and hands them over as a WebAssembly.Module binding, with the model files as bytes:
// env = { KERNELS, CONFIG, WEIGHTS }, as a Workers handler `fetch(request, env)` receives them.
// Input (stdin): a 4-byte little-endian header length, a JSON header
// { "files": [[name, bytes], …] } and then the files' bytes in that order.
// Output: one line of JSON { answers: [text of each response], globals: what the handler saw }.

export const PROMPT = 'Q: What is the meaning of life?\nA:';

async function readStdin() {
  const chunks = [];
  const stream = globalThis.Deno ? globalThis.Deno.stdin.readable : globalThis.process.stdin;
  for await (const c of stream) chunks.push(c);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  return all;
}

function lockDown() {
  // Request and Response are made once first: Node's undici sets itself up on first use and
  // looks for globals then.
  new Request('https://edge.example/');
  new Response('');
  const refuse = (what) => () => { throw new Error(`edge: ${what} is not allowed here`); };
  WebAssembly.compile = refuse('WebAssembly.compile');
  WebAssembly.compileStreaming = refuse('WebAssembly.compileStreaming');
  WebAssembly.instantiateStreaming = refuse('WebAssembly.instantiateStreaming');
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = (module, imports) => (module instanceof WebAssembly.Module
    ? instantiate(module, imports)
    : Promise.reject(new Error('edge: WebAssembly.instantiate from bytes is not allowed here')));
  WebAssembly.Module = new Proxy(WebAssembly.Module, { construct: refuse('new WebAssembly.Module') });
  for (const name of ['SharedArrayBuffer', 'fetch', 'process', 'require']) delete globalThis[name];
  const globals = {
    SharedArrayBuffer: typeof SharedArrayBuffer, fetch: typeof fetch, process: typeof globalThis.process,
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
  };
  if (globals.SharedArrayBuffer !== 'undefined' || globals.fetch !== 'undefined' || globals.process !== 'undefined') {
    throw new Error(`edge: could not remove a global: ${JSON.stringify(globals)}`);
  }
  return globals;
}

/** Read the input, make the platform, lock it down, import the handler and send it two requests. */
export async function runEdge(importHandler) {
  const input = await readStdin();
  const headerLength = new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(input.subarray(4, 4 + headerLength)));
  const files = {};
  let at = 4 + headerLength;
  for (const [name, length] of header.files) {
    files[name] = input.slice(at, at + length);
    at += length;
  }
  // The platform compiles the kernels before any handler runs, then locks the isolate down.
  const env = { KERNELS: await WebAssembly.compile(files.KERNELS), CONFIG: files.CONFIG, WEIGHTS: files.WEIGHTS };
  const globals = lockDown();

  const handler = (await importHandler()).default;
  const answers = [];
  for (let i = 0; i < 2; i++) { // a cold request, then a warm one in the same isolate
    const res = await handler.fetch(new Request(`https://edge.example/?prompt=${encodeURIComponent(PROMPT)}`), env);
    if (!res.ok) throw new Error(`edge: the handler answered HTTP ${res.status}: ${await res.text()}`);
    answers.push(await res.text());
  }
  console.log(JSON.stringify({ answers, globals }));
}
