// Runs web/src/noise.js (the automatic mode's readings) on raw arrays, for the check
// against Python in tests/test_web.py.
//
//   node web/tests/noise_check.mjs - < SPEC.json
//
// SPEC: {"settings": the contents of models/auto.json,
//        "cases": [{"file": "planes.f32", "width": w, "height": h, "channels": c}
//                    (c planes of float32 values, little-endian, one after the other),
//                  {"file": "pixels.rgba", "width": w, "height": h, "rgba": true}
//                    (RGBA bytes, as the page decodes a photo), ...],
//        "strength": 1}
// Output: one JSON line, a list per case of {sigma, coarseSigma, ratio, floor: {fine,
//         coarse, level}, route: {model, kind, sigma, cap, maxLevel, minLevel, strength}}.
import { readFileSync } from "node:fs";
import { readImage, readRGBA, route, settingsFrom } from "../src/noise.js";

const spec = JSON.parse(readFileSync(0, "utf8"));
const settings = settingsFrom(spec.settings);
const out = [];
for (const c of spec.cases) {
  const bytes = readFileSync(c.file);
  let reading;
  if (c.rgba) {
    reading = readRGBA(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
      c.width, c.height, settings);
  } else {
    const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const n = c.width * c.height;
    const planes = [];
    for (let p = 0; p < c.channels; p++) planes.push(all.subarray(p * n, (p + 1) * n));
    reading = readImage(planes, c.width, c.height, settings);
  }
  // JSON has no Infinity: a ratio of inf is written as null.
  out.push({ ...reading, ratio: Number.isFinite(reading.ratio) ? reading.ratio : null,
    route: route(reading, spec.strength ?? 1, settings) });
}
process.stdout.write(JSON.stringify(out) + "\n");
