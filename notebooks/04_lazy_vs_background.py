# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Lazy against background sweeping
#
# **Question.** A store can sweep lazily (at every write), in the background (a worker
# every interval), or both. Which keeps memory closest to what the TTL promises
# (*overshoot*: runs past their TTL still held), at what work per call, and does anyone
# see a run past its TTL (*stale visibility*)?
#
# Workload: a daily cycle (busy days, quiet nights: the rate swings 90% around 0.5 runs
# per second), lognormal durations, half the runs read back late. TTL 10 minutes, cap
# 5,000. The model's stores apply the TTL at every read, so they never show an expired run
# whatever the sweep; the S1 replica (lazy at writes plus a 300 s worker) is added to show
# what a store that does not looks like.

# %%
import os

import matplotlib.pyplot as plt

from runbound.figures import show
from runbound.model.policy import Policy, SweepMode
from runbound.model.sim.simulate import StoreEngine, simulate
from runbound.model.sim.workload import DailyCycle, LogNormal, Workload
from runbound.reference.seeds.s1_adapter import S1Store

SCALE = float(os.environ.get("RUNBOUND_NOTEBOOK_SCALE", "1"))
RUNS = max(1500, int(60_000 * SCALE))
workload = Workload(runs=RUNS, arrivals=DailyCycle(0.5, amplitude=0.9, period=86_400),
                    durations=LogNormal(60, 1.0), late_readers=0.5,
                    read_delay=LogNormal(600, 1.0))
base = dict(ttl=600, max_terminal=5000)
setups = {
    "lazy": (Policy(**base, sweep=SweepMode.LAZY), None),
    "background 10 s": (Policy(**base, sweep=SweepMode.BACKGROUND), 10),
    "background 60 s": (Policy(**base, sweep=SweepMode.BACKGROUND), 60),
    "background 300 s": (Policy(**base, sweep=SweepMode.BACKGROUND), 300),
    "both, 300 s": (Policy(**base, sweep=SweepMode.BOTH), 300),
}
results = {name: simulate(workload, policy, worker_interval=interval, sample_every=60)
           for name, (policy, interval) in setups.items()}
engine = StoreEngine(S1Store, Policy(**base))
try:
    results["S1 replica"] = simulate(workload, Policy(**base), engine=engine,
                                     worker_interval=300, sample_every=60)
finally:
    engine.close()
for name, m in results.items():
    work = f"{m.work_per_call:.2f}" if m.work_per_call is not None else "   -"
    sweeps = f"{m.sweeps / m.calls:.2f}" if m.sweeps is not None else "   -"
    print(f"{name:17} overshoot mean {m.mean_overshoot:7.1f} runs, peak {m.peak_terminal:>5}"
          f" terminal; records touched per call {work}, sweeps per call {sweeps}; "
          f"stale reads {m.miss_rate('stale'):.2%}")

# %% [markdown]
# Expired runs still held, averaged over each hour (log scale: the stores differ by
# orders of magnitude); the legend gives each store's mean over the whole run.

# %%
STYLES = [("-", "o"), ("--", "s"), ("-.", "D"), (":", "^"), ("-", "v"), ("--", "x")]
fig, ax = plt.subplots(figsize=(9, 4.5))
for (name, m), (linestyle, marker) in zip(results.items(), STYLES, strict=True):
    hours: dict[int, list[int]] = {}
    for s in m.samples:
        hours.setdefault(int(s[0] // 3600), []).append(s[3])
    ax.plot(list(hours), [sum(v) / len(v) for v in hours.values()], linestyle=linestyle,
            marker=marker, markersize=5, markerfacecolor="none" if name.startswith("both")
            else None, label=f"{name} (mean {m.mean_overshoot:.1f})")
ax.set_yscale("symlog", linthresh=1)
ax.set_ylim(bottom=0)
ax.set_xlabel("hours (busy days, quiet nights)")
ax.set_ylabel("expired runs held, hourly mean")
lazy, bg300, s1 = results["lazy"], results["background 300 s"], results["S1 replica"]
ax.set_title(f"Lazy sweeping holds {lazy.mean_overshoot:.1f} expired runs on average, "
             f"a 300 s worker {bg300.mean_overshoot:.0f}, the S1 replica "
             f"{s1.mean_overshoot:.0f}")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), title="sweep (mean held)")
show(fig)

# %%
bg60 = results["background 60 s"]
print(f"Answer: lazy sweeping holds {lazy.mean_overshoot:.1f} expired runs on average and "
      f"sweeps at {lazy.sweeps / lazy.calls:.2f} per call; a 60 s worker holds "
      f"{bg60.mean_overshoot:.1f} for {bg60.sweeps / bg60.calls:.3f} sweeps per call. "
      f"The model's stores never show an expired run; the S1 replica shows one in "
      f"{s1.miss_rate('stale'):.1%} of late reads.")
assert lazy.miss_rate("stale") == 0 == bg60.miss_rate("stale") < s1.miss_rate("stale")

# %% [markdown]
# **Answer.** (Full-size run: 60,000 runs, about 33 hours.) Lazy sweeping keeps memory
# closest to the TTL (1.0 expired run held on average) at 0.57 sweeps per call; with
# indexes each sweep touches only what it removes, so records touched per call are the same
# 0.28 in every mode: the cost of retention is the runs removed, not the sweeps. A
# background worker alone holds about arrivals x interval / 2 expired runs: 2.5 at 10 s,
# 15 at 60 s, 75 at 300 s. Both (lazy plus a 300 s worker) is as tight as lazy and also
# empties the store in quiet hours, when nothing writes. None of this is seen by clients
# if, as in the model, the TTL is checked at every read: no model store showed an expired
# run. The S1 replica does not check it: it held 699 expired runs on average and showed
# one to 1.05% of late readers.
