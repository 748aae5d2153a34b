// The page: takes a photo (picker or drag and drop), decodes it here, hands its pixels to
// the worker (src/worker.js) and shows the result beside the input at 100% zoom. Nothing
// is uploaded: the only requests are for the page's own files and the model.
//
// URL parameters (for tests and measurements):
//   tile=N, overlap=N  tile side and overlap, as `malleconv denoise --tile --tile-overlap`
//                      (default: the command's, from models/auto.json)
//   backend=auto|wasm|webgpu

import { checkFile, decodeImage, LIMITS } from "./decode.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const TILE = intParam("tile", null, 16); // null: the worker takes the command's
const OVERLAP = intParam("overlap", null, 0);
const BACKEND = params.get("backend") || "auto";

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
let job = 0; // id of the newest job
let current = null; // {name, width, height, rgba (Uint8ClampedArray)} of the loaded photo
let photo = 0; // id of the loaded photo: the worker keeps its noise reading for re-runs

// Read by tests and scripts/web_*.py through the browser driver.
window.malleconv = { runs: [], state: "idle", progress: [0, 0] };

function intParam(name, fallback, min) {
  const v = Number.parseInt(params.get(name) ?? "", 10);
  return Number.isFinite(v) && v >= min ? v : fallback;
}

function setState(state) {
  document.body.dataset.state = state;
  window.malleconv.state = state;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function open(file) {
  showMessage("");
  const problem = checkFile(file);
  if (problem) {
    // The photo already shown (if any) stays, and the page keeps working.
    showMessage(problem);
    setState(current ? "done" : "idle");
    return;
  }
  let image;
  try {
    setState("decoding");
    $("status").textContent = `reading ${file.name}`;
    image = await decodeImage(file);
  } catch (err) {
    showMessage(err.message);
    $("status").textContent = current ? `showing ${current.name}` : "";
    setState(current ? "done" : "error");
    return;
  }
  current = { name: file.name, ...image };
  photo += 1;
  $("decision").textContent = "";
  drawInto($("before"), current.width, current.height, current.rgba);
  drawInto($("after"), current.width, current.height, current.rgba);
  $("compare").hidden = false;
  // As wide as the image (up to the page), so that the split slider spans the image.
  $("compare").style.width = `${Math.max(200, current.width / devicePixelRatio + 2)}px`;
  $("download").disabled = true;
  denoise();
}

function drawInto(canvas, width, height, rgba) {
  canvas.width = width;
  canvas.height = height;
  // 100% zoom: one image pixel per device pixel.
  canvas.style.width = `${width / devicePixelRatio}px`;
  canvas.style.height = `${height / devicePixelRatio}px`;
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
}

function denoise() {
  if (!current) return;
  job += 1;
  const strength = Number($("strength").value);
  $("progress").value = 0;
  window.malleconv.progress = [0, 0];
  $("timing").textContent = "";
  $("download").disabled = true;
  setState("running");
  // A copy goes to the worker: the input is kept here for re-runs at other strengths.
  const rgba = current.rgba.slice().buffer;
  worker.postMessage(
    { type: "denoise", id: job, image: photo, width: current.width, height: current.height,
      rgba, strength, tile: TILE, overlap: OVERLAP, backend: BACKEND },
    [rgba],
  );
}

worker.onmessage = (event) => {
  const msg = event.data;
  if (msg.id !== job) return; // a superseded run
  if (msg.type === "status") {
    $("status").textContent = msg.text;
    if (msg.backend) $("engine").textContent = engineText(msg.backend, msg.threads);
  } else if (msg.type === "decision") {
    $("decision").textContent = decisionText(msg.decision, null);
  } else if (msg.type === "progress") {
    $("progress").max = msg.total;
    $("progress").value = msg.done;
    $("status").textContent = `denoising: tile ${msg.done} of ${msg.total}`;
    window.malleconv.progress = [msg.done, msg.total];
  } else if (msg.type === "done") {
    const { width, height } = current;
    drawInto($("after"), width, height, new Uint8ClampedArray(msg.rgba));
    const mp = (width * height) / 1e6;
    $("status").textContent = `done: ${current.name}, ${width}x${height}`;
    $("timing").textContent =
      `${mp.toFixed(2)} MP in ${msg.seconds.toFixed(2)} s ` +
      `(${(msg.seconds / mp).toFixed(2)} s/MP, ${msg.tiles} tile${msg.tiles === 1 ? "" : "s"})`;
    $("engine").textContent = engineText(msg.backend, msg.threads);
    $("decision").textContent = decisionText(msg.decision, msg.level);
    $("download").disabled = false;
    window.malleconv.runs.push({
      name: current.name, width, height, seconds: msg.seconds, backend: msg.backend,
      threads: msg.threads, tiles: msg.tiles, level: msg.level, decision: msg.decision,
      strength: Number($("strength").value), tile: msg.tile, overlap: msg.overlap,
      crossOriginIsolated: self.crossOriginIsolated,
    });
    setState("done");
  } else if (msg.type === "error") {
    showMessage(`Denoising failed: ${msg.message}`);
    $("status").textContent = "";
    setState("error");
  }
};

worker.onerror = (event) => {
  showMessage(`The denoising worker failed to start: ${event.message || "unknown error"}`);
  setState("error");
};

// What the automatic mode decided, worded as `malleconv denoise` prints it:
// "sigma 7.92, camera noise: mallenet-s-real, mean of the estimated noise-level map,
// noise floor 10.21 (level at most 25.52)". `level`: the level the model got, once known.
function decisionText(d, level) {
  const how = d.white === null ? "mean of the estimated noise-level map" : "estimated";
  const sigma = d.white !== null ? d.white : level;
  const lead = sigma === null || sigma === undefined ? "" : `sigma ${sigma.toFixed(2)}, `;
  const strength = d.strength !== 1 ? `, strength ${d.strength}` : "";
  const bound = d.minLevel > 0 ? `, at least ${d.minLevel.toFixed(2)}` : "";
  return `Automatic mode: ${lead}${d.kind}: ${d.model}, ${how}, noise floor ` +
    `${d.floor.toFixed(2)} (level at most ${d.cap.toFixed(2)}${bound})` +
    `${d.halfPass ? "; low band from a half-resolution pass" : ""}${strength}.`;
}

function engineText(backend, threads) {
  if (backend === "webgpu") return "Ran on WebGPU.";
  const isolated = self.crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated";
  return `Ran on WebAssembly, ${threads} thread${threads === 1 ? "" : "s"} (${isolated}).`;
}

function download() {
  if (!current) return;
  const stem = current.name.replace(/\.[^.]*$/, "") || "photo";
  $("after").toBlob((blob) => {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${stem}_denoised.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }, "image/png");
}

function setSplit(percent) {
  $("after").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("divider").style.left = `${percent}%`;
}

// Wiring.
$("limit-mp").textContent = String(LIMITS.megapixels);
$("limit-mb").textContent = String(LIMITS.megabytes);
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  e.target.value = ""; // picking the same file again still fires "change"
  if (file) open(file);
});
const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) open(file);
});
// A photo dropped anywhere else must not make the browser navigate away from the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
});
$("strength").addEventListener("change", denoise); // on release: one re-run, not one per step
$("split").addEventListener("input", () => setSplit(Number($("split").value)));
// Dragging on the image moves the split too.
$("stack").addEventListener("pointermove", (e) => {
  if (!e.buttons) return;
  const box = $("stack").getBoundingClientRect();
  const percent = Math.min(100, Math.max(0, ((e.clientX - box.left) / box.width) * 100));
  $("split").value = String(percent);
  setSplit(percent);
});
$("download").addEventListener("click", download);
setSplit(50);
setState("idle");
