// The denoising worker: loads onnxruntime-web once and each model when first needed, then
// denoises the RGBA pixels it is sent as `malleconv denoise` does with no --sigma and no
// --model (the automatic mode): it reads the whole image once (src/noise.js: the noise
// level at two scales and the noise floor), chooses mallenet-s (white noise) or
// mallenet-s-real (camera noise) with the level cap the floor allows, and runs that model
// tile by tile, posting progress after each tile. In a worker so that the page stays
// responsive while a 12-megapixel photo runs for a minute or more.
//
// Messages in:  {type: "denoise", id, image (id of the photo: its reading is kept for
//                re-runs of the same photo), width, height, rgba (ArrayBuffer), strength,
//                tile, overlap (null: the command's, from models/auto.json),
//                backend ("auto" | "wasm" | "webgpu")}
//               {type: "cancel", id}
// Messages out: {type: "status", id, text}, {type: "decision", id, decision},
//               {type: "progress", id, done, total},
//               {type: "done", id, rgba (ArrayBuffer), seconds, backend, threads, tiles,
//                tile, overlap (those used), level, decision},
//               {type: "error", id, message}
// decision: {model, kind, sigma, coarseSigma, ratio, floor, floorFine, floorCoarse, cap,
//            maxLevel, minLevel, halfPass, halfMaxLevel, halfMinLevel, white (the level
//            mallenet-s gets, or null), strength, readSeconds}

import { halfResolution, mergeHalf } from "./half.js";
import { halfLevels, readHalfFloorRGBA, readRGBA, route, settingsFrom } from "./noise.js";
import { blendTiles, planTiles, toByte } from "./tiling.js";

const MODELS_URL = new URL("../models/", import.meta.url).href;
const ORT_DIR = new URL("../vendor/ort/", import.meta.url).href;
const PREPARE = "run `malleconv web --prepare` (or start the page with `malleconv web`), which " +
  "exports both models and writes models/auto.json";

let loaded = null; // Promise of {ort, backend, threads, settings}
const sessions = new Map(); // model name -> Promise of its InferenceSession
let latest = 0; // id of the newest job; older jobs stop at their next tile
let reading = null; // {image, value}: the reading of the last photo

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === "cancel") {
    if (msg.id >= latest) latest = msg.id + 1;
    return;
  }
  if (msg.type === "denoise") {
    latest = msg.id;
    run(msg).catch((err) => {
      self.postMessage({ type: "error", id: msg.id, message: describe(err) });
    });
  }
};

function describe(err) {
  const text = err && err.message ? err.message : String(err);
  if (/failed to fetch|404|not found/i.test(text) && /onnx|auto\.json/i.test(text)) {
    return `a model file could not be loaded (${text}); ${PREPARE}`;
  }
  return text;
}

async function hasWebGPU() {
  try {
    return Boolean(self.navigator.gpu && (await self.navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

async function load(backend) {
  // WebGPU where the browser has an adapter; otherwise the plain WebAssembly build, which
  // is the faster CPU path (the WebGPU build's wasm is compiled with asyncify).
  const gpu = backend === "webgpu" || (backend === "auto" && (await hasWebGPU()));
  const ort = await import(ORT_DIR + (gpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = ORT_DIR;
  // Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated
  // pages (the COOP / COEP headers that `malleconv web` sends). Without them: one thread.
  const threads = self.crossOriginIsolated
    ? Math.max(1, Math.min(self.navigator.hardwareConcurrency || 1, 8))
    : 1;
  ort.env.wasm.numThreads = threads;
  // The automatic mode's settings, written from the Python modules by `malleconv web`.
  const response = await fetch(MODELS_URL + "auto.json");
  if (!response.ok) {
    throw new Error(`models/auto.json could not be loaded (${response.status}); ${PREPARE}`);
  }
  const settings = settingsFrom(await response.json());
  return { ort, gpu, backend: gpu ? "webgpu" : "wasm", threads: gpu ? 0 : threads, settings };
}

/** The InferenceSession of model `name` (models/NAME.onnx), created on first use. */
function session(runtime, name) {
  if (!sessions.has(name)) {
    const url = `${MODELS_URL}${name}.onnx`;
    const made = (async () => {
      const response = await fetch(url);
      if (!response.ok) {
        throw new Error(`the model file could not be loaded (${response.status} for ${url}); ` +
          PREPARE);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      return runtime.ort.InferenceSession.create(bytes, {
        executionProviders: runtime.gpu ? ["webgpu", "wasm"] : ["wasm"],
        graphOptimizationLevel: "all",
      });
    })();
    made.catch(() => sessions.delete(name)); // a failed load may be retried
    sessions.set(name, made);
  }
  return sessions.get(name);
}

async function run(msg) {
  const { id, width, height, strength } = msg;
  const rgba = new Uint8ClampedArray(msg.rgba);
  if (loaded === null) {
    self.postMessage({ type: "status", id, text: "loading the model" });
    loaded = load(msg.backend || "auto");
    loaded.catch(() => (loaded = null)); // a failed load may be retried
  }
  const runtime = await loaded;
  const { ort, backend, threads, settings } = runtime;

  const started = performance.now();
  // The automatic mode: one reading of the whole photo before any tiling, as the command
  // routes once per image; kept for re-runs of the same photo at other strengths.
  if (reading === null || msg.image === undefined || reading.image !== msg.image) {
    self.postMessage({ type: "status", id, text: "reading the noise" });
    reading = { image: msg.image, value: readRGBA(rgba, width, height, settings) };
  }
  const r = reading.value;
  const choice = route(r, strength, settings);
  // Grain wider than a pixel: the half-resolution pass, its cap and bound read at half
  // resolution (once per photo, as the reading).
  if (choice.halfPass && reading.half === undefined) {
    reading.half = halfLevels(readHalfFloorRGBA(rgba, width, height, settings), settings);
  }
  const half = choice.halfPass ? reading.half : null;
  const decision = {
    model: choice.model, kind: choice.kind, sigma: r.sigma, coarseSigma: r.coarseSigma,
    ratio: r.ratio, floor: r.floor.level, floorFine: r.floor.fine,
    floorCoarse: r.floor.coarse, cap: choice.cap, maxLevel: choice.maxLevel,
    minLevel: choice.minLevel, halfPass: choice.halfPass,
    halfMaxLevel: half ? half.maxLevel : null, halfMinLevel: half ? half.minLevel : null,
    white: choice.sigma, strength,
    readSeconds: (performance.now() - started) / 1000,
  };
  self.postMessage({ type: "decision", id, decision });
  if (id !== latest) return;
  if (!sessions.has(choice.model)) {
    self.postMessage({ type: "status", id, text: `loading ${choice.model}` });
  }
  const net = await session(runtime, choice.model);
  self.postMessage({
    type: "status", id, backend, threads,
    text: backend === "webgpu" ? `denoising with ${choice.model} (WebGPU)`
      : `denoising with ${choice.model} (WebAssembly, ${threads} ` +
        `thread${threads === 1 ? "" : "s"})`,
  });

  // The command's tiling unless the page was told otherwise (?tile=, ?overlap=).
  const tile = msg.tile ?? settings.tile;
  const overlap = Math.min(msg.overlap ?? settings.tileOverlap, tile >> 1);
  const plan = planTiles(height, width, tile, overlap);
  const { th, tw } = plan;
  const strengthT = new ort.Tensor("float32", Float32Array.of(choice.strength), [1]);
  // White noise: mallenet-s at the level read (at most the cap) times the strength, the
  // graph's own strength 1. Otherwise: the blind model's level map capped at the cap and
  // raised to the bound.
  const levelT = choice.maxLevel === null
    ? new ort.Tensor("float32", Float32Array.of(choice.sigma), [1])
    : new ort.Tensor("float32", Float32Array.of(choice.maxLevel), [1]);
  const minLevelT = new ort.Tensor("float32", Float32Array.of(choice.minLevel), [1]);
  const halfFeeds = half && {
    strength: strengthT,
    max_level: new ort.Tensor("float32", Float32Array.of(half.maxLevel), [1]),
    min_level: new ort.Tensor("float32", Float32Array.of(half.minLevel), [1]),
  };
  const levels = [];

  async function denoiseTile(y0, x0) {
    // uint8 -> float32 as malleconv.io.to_float does (v / 255 in float32), channel-planar.
    const x = new Float32Array(3 * th * tw);
    for (let r = 0; r < th; r++) {
      let src = ((y0 + r) * width + x0) * 4;
      const row = r * tw;
      for (let c = 0; c < tw; c++, src += 4) {
        x[row + c] = rgba[src] / 255;
        x[th * tw + row + c] = rgba[src + 1] / 255;
        x[2 * th * tw + row + c] = rgba[src + 2] / 255;
      }
    }
    const noisy = new ort.Tensor("float32", x, [1, 3, th, tw]);
    const feeds = choice.maxLevel === null
      ? { noisy, sigma: levelT, strength: strengthT }
      : { noisy, strength: strengthT, max_level: levelT, min_level: minLevelT };
    const out = await net.run(feeds);
    const level = out.level ? await out.level.getData() : null;
    if (level) levels.push(mean(level));
    const data = await out.denoised.getData();
    noisy.dispose?.();
    for (const t of Object.values(out)) t.dispose?.();
    if (!halfFeeds) return data;
    // The pass over the tile's 2x2 block means; its output's low band replaces the tile's.
    const small = halfResolution(x, 3, th, tw);
    const input = new ort.Tensor("float32", small.data, [1, 3, small.height, small.width]);
    const low = await net.run({ ...halfFeeds, noisy: input });
    const merged = mergeHalf(Float32Array.from(data), await low.denoised.getData(), 3, th, tw);
    input.dispose?.();
    for (const t of Object.values(low)) t.dispose?.();
    return merged;
  }

  // Finished rows go straight into the output bytes; alpha is copied from the input.
  const result = new Uint8ClampedArray(rgba.length);
  function emitRows(y0, rows, n) {
    const plane = n * width;
    for (let r = 0; r < n; r++) {
      let dst = (y0 + r) * width * 4;
      for (let x = 0; x < width; x++, dst += 4) {
        const k = r * width + x;
        result[dst] = toByte(rows[k]);
        result[dst + 1] = toByte(rows[plane + k]);
        result[dst + 2] = toByte(rows[2 * plane + k]);
        result[dst + 3] = rgba[dst + 3];
      }
    }
  }

  const finished = await blendTiles(
    plan, width, denoiseTile, emitRows,
    (done, total) => self.postMessage({ type: "progress", id, done, total }),
    () => id !== latest,
  );
  if (!finished) return;
  const seconds = (performance.now() - started) / 1000;
  self.postMessage(
    {
      type: "done", id, rgba: result.buffer, seconds, backend, threads,
      tiles: plan.ys.length * plan.xs.length, tile, overlap,
      // The level the model got: the white level, or the mean of the blind model's maps.
      level: choice.maxLevel === null ? choice.sigma : levels.length ? mean(levels) : null,
      decision,
    },
    [result.buffer],
  );
}

function mean(values) {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s / values.length;
}
