import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { presentOrSkip } from './availability.js';

/** Whether Debian's onnx is there to edit a graph; under CI=true its absence is a failure, not a skip. */
export function onnxEditorAvailable(): boolean {
  const found = spawnSync('/usr/bin/python3', ['-c', 'import onnx'], { stdio: 'ignore' }).status === 0;
  return presentOrSkip(found ? null : '/usr/bin/python3 cannot import onnx (apt install python3-onnx)');
}

// Adds a constant to the graph's delay, low and high before their clamps at 0: a model that answers
// `minutes` off, served like any other.
const SHIFT = `
import sys, onnx
from onnx import helper, numpy_helper
import numpy as np
source, target, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
model = onnx.load(source)
graph = model.graph
graph.initializer.append(numpy_helper.from_array(np.array([minutes], dtype=np.float32), 'shift'))
raws = ('delay_raw', 'low_raw', 'high_raw')
nodes = []
for node in graph.node:
    node.input[:] = [i + '_shifted' if i in raws else i for i in node.input]
    nodes.append(node)
    nodes += [helper.make_node('Add', [o, 'shift'], [o + '_shifted']) for o in node.output if o in raws]
del graph.node[:]
graph.node.extend(nodes)
onnx.checker.check_model(model)
onnx.save(model, target)
`;

/**
 * Writes `version` into `modelsDir`: gbt-v2's graph with `minutes` added to every answer, and gbt-v2's card
 * under the new version. Also copies gbt-v2 itself, so the folder serves both.
 */
export function writeShiftedModel(modelsDir: string, version: string, minutes: number) {
  for (const ext of ['onnx', 'json']) copyFileSync(`models/gbt-v2.${ext}`, join(modelsDir, `gbt-v2.${ext}`));
  const run = spawnSync(
    '/usr/bin/python3',
    ['-c', SHIFT, 'models/gbt-v2.onnx', join(modelsDir, `${version}.onnx`), String(minutes)],
    { encoding: 'utf8' },
  );
  if (run.status !== 0) throw new Error(`cannot write ${version}: ${run.stderr}`);
  const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
  writeFileSync(
    join(modelsDir, `${version}.json`),
    JSON.stringify({ ...card, version, onnx: { ...card.onnx, file: `${version}.onnx` } }, null, 2),
  );
}
