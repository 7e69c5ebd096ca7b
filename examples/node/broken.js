// store.js with one planted defect the kit must catch: the terminal cap evicts the
// oldest *started* run, active or not (breaks I4, "an active run is never evicted").
//
//     runbound conform --exec "node examples/node/broken.js" --invariant I4
'use strict';

const store = require('./store.js');

store.hooks.enforceCap = (runs, p) => {
  if (p.max_terminal === null) return [runs, []];
  let kept = runs;
  const evicted = [];
  while (kept.filter((r) => r.terminated_at !== null).length > p.max_terminal) {
    evicted.push(kept[0].run_id); // the defect: kept[0] may be active
    kept = kept.slice(1);
  }
  return [kept, evicted.sort()];
};
store.serve();
