// Copies the onnxruntime-web runtime (ES module + WebAssembly) out of node_modules into
// vendor/ort/, so that the page works as a plain static site with no bundler. Run by
// `npm ci` (postinstall); vendor/ is git-ignored: these files come from the lock file,
// never by hand.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(web, "node_modules", "onnxruntime-web", "dist");
const dest = join(web, "vendor", "ort");

// Two builds, and the worker imports one: the plain WebAssembly build (SIMD, threads when
// the page is cross-origin isolated) and the WebGPU build, which fetches its own .wasm
// (asyncify) at run time. The plain build is kept because it is the faster CPU path.
const wanted = (name) =>
  /^ort\.(wasm|webgpu)\.min\.mjs$/.test(name) ||
  /^ort-wasm-simd-threaded\.(asyncify\.)?(wasm|mjs)$/.test(name);

rmSync(dest, { recursive: true, force: true });
mkdirSync(dest, { recursive: true });
let n = 0;
for (const name of readdirSync(dist)) {
  if (wanted(name)) {
    copyFileSync(join(dist, name), join(dest, name));
    n += 1;
  }
}
if (n === 0) throw new Error(`no onnxruntime-web files found in ${dist}`);
console.log(`copied ${n} onnxruntime-web files to ${dest}`);
