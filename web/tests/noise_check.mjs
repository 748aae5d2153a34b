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
//        "strength": 1,
//        "merges": [{"file": "full.f32", "half": "half.f32", "channels": c, "width": w,
//                    "height": h}, ...]}
// Output: one JSON line, {"cases": a list per case of {sigma, coarseSigma, ratio, floor:
//         {fine, coarse, level}, halfFloor (the same at half resolution), halfLevels:
//         {maxLevel, minLevel}, route: {model, kind, sigma, cap, maxLevel, minLevel,
//         halfPass, strength}}, "merges": per merge, {low: halfResolution(full) and merged:
//         mergeHalf(full, half)} as arrays}.
import { readFileSync } from "node:fs";
import { halfResolution, mergeHalf } from "../src/half.js";
import {
  halfLevels, readHalfFloor, readHalfFloorRGBA, readImage, readRGBA, route, settingsFrom,
} from "../src/noise.js";

const spec = JSON.parse(readFileSync(0, "utf8"));
const settings = settingsFrom(spec.settings);
const out = [];
for (const c of spec.cases) {
  const bytes = readFileSync(c.file);
  let reading;
  let halfFloor;
  if (c.rgba) {
    const rgba = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    reading = readRGBA(rgba, c.width, c.height, settings);
    halfFloor = readHalfFloorRGBA(rgba, c.width, c.height, settings);
  } else {
    const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const n = c.width * c.height;
    const planes = [];
    for (let p = 0; p < c.channels; p++) planes.push(all.subarray(p * n, (p + 1) * n));
    reading = readImage(planes, c.width, c.height, settings);
    halfFloor = readHalfFloor(planes, c.width, c.height, settings);
  }
  // JSON has no Infinity: a ratio of inf is written as null.
  out.push({ ...reading, ratio: Number.isFinite(reading.ratio) ? reading.ratio : null,
    halfFloor, halfLevels: halfLevels(halfFloor, settings),
    route: route(reading, spec.strength ?? 1, settings) });
}
const f32 = (file) => {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
};
const merges = (spec.merges ?? []).map((m) => {
  const full = f32(m.file);
  const low = halfResolution(full, m.channels, m.height, m.width);
  const merged = mergeHalf(Float32Array.from(full), f32(m.half), m.channels, m.height, m.width);
  return { low: Array.from(low.data), merged: Array.from(merged) };
});
process.stdout.write(JSON.stringify({ cases: out, merges }) + "\n");
