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
# # 3. When active runs dominate: a best-effort cap, admission control, lease reaping
#
# **Question.** Caps on *terminal* runs do nothing when the runs piling up are *active*:
# runs whose worker died and that will never finish. The first seed caps all runs at 200
# but may only delete finished ones, so its cap is best-effort. What do admission control
# (refuse new starts past `max_active`) and lease reaping (fail a run that stops
# heartbeating) each buy, and what do they cost?
#
# Workload: a run every 2 s, durations heavy-tailed (Pareto, at least 60 s), live runs
# heartbeat every 30 s, and 20% of runs never finish: their worker is gone and they stop
# heartbeating. Four stores: the S1 replica at its defaults (24 h TTL, 200 runs), and the
# reference with admission control (`max_active=100`), with a lease (`stale_after=300`),
# and with both. The first runs through the seed's own code (`StoreEngine(S1Store)`).

# %%
import os

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from runbound.figures import show
from runbound.model.policy import Policy, SweepMode
from runbound.model.sim.simulate import StoreEngine, simulate
from runbound.model.sim.workload import LogNormal, Pareto, Poisson, Workload
from runbound.reference.seeds.s1_adapter import S1Store

SCALE = float(os.environ.get("RUNBOUND_NOTEBOOK_SCALE", "1"))
RUNS = max(600, int(12_000 * SCALE))
workload = Workload(runs=RUNS, arrivals=Poisson(0.5), durations=Pareto(60, 1.5),
                    never_finish=0.2, heartbeat_every=30, late_readers=0.3,
                    read_delay=LogNormal(300, 1.0))
both_sweeps = SweepMode.BOTH
s1_policy = Policy(ttl=86_400, max_terminal=200)
policies = {
    "admission (max_active=100)": Policy(ttl=86_400, max_terminal=200, max_active=100),
    "lease (stale_after=300)": Policy(ttl=86_400, max_terminal=200, stale_after=300,
                                      sweep=both_sweeps),
    "both": Policy(ttl=86_400, max_terminal=200, max_active=100, stale_after=300,
                   sweep=both_sweeps),
}
results = {}
engine = StoreEngine(S1Store, s1_policy)
try:  # S1's worker sweeps every 300 s at its defaults
    results["S1 replica (cap 200, best effort)"] = simulate(workload, s1_policy, engine=engine,
                                                            worker_interval=300)
finally:
    engine.close()
for name, policy in policies.items():
    results[name] = simulate(workload, policy, worker_interval=60)
for name, m in results.items():
    total = max(a + t for _, a, t, _, _ in m.samples)
    print(f"{name:36} peak active {m.peak_active:>5}, peak retained {total:>5}, "
          f"starts refused {m.refused:>5} ({m.refused / m.starts:.1%}), "
          f"reaped {m.reaped if m.reaped is not None else '-'}")

# %% [markdown]
# Left, the active runs each store holds over time (log scale); right, what each policy
# costs the clients that start runs.

# %%
s1 = results["S1 replica (cap 200, best effort)"]
lease = results["lease (stale_after=300)"]
fig, (ax, cost) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
for (name, m), linestyle in zip(results.items(), ("-", "--", "-.", ":"), strict=True):
    ax.plot([s[0] / 3600 for s in m.samples], [s[1] for s in m.samples], label=name,
            linestyle=linestyle, linewidth=2 if linestyle == ":" else 1.5)
ax.set_xlabel("hours")
ax.set_ylabel("active runs retained (log scale)")
ax.set_yscale("symlog", linthresh=1)
ax.set_ylim(bottom=0)
ax.set_title("active runs held")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2, fontsize=9)
names = list(results)
refused = [results[n].refused / results[n].starts for n in names]
bars = cost.barh(range(len(names)), refused, color="0.6")
cost.bar_label(bars, [f"{r:.1%}" for r in refused], padding=3)
cost.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names])
cost.invert_yaxis()
cost.set_xlim(0, 1.15)
cost.xaxis.set_major_formatter(PercentFormatter(1.0))
cost.set_xlabel("starts refused")
cost.set_ylabel("store and policy")
cost.set_title("starts refused")
fig.suptitle(f"Under a cap on finished runs, active runs reach {s1.peak_active:,}; a lease "
             f"frees the dead ones ({lease.peak_active} active at most) and refuses no start")
fig.tight_layout()
show(fig)

# %%
admit, lease, both = (results[k] for k in policies)
s1_total = max(a + t for _, a, t, _, _ in s1.samples)
print(f"Answer: under the best-effort cap of 200 the replica retains up to {s1_total} runs, "
      f"{s1.peak_active} of them active and never finishing: the cap cannot touch them. "
      f"Admission control holds active runs at {admit.peak_active} but refuses "
      f"{admit.refused / admit.starts:.0%} of starts, most because dead runs hold the "
      f"slots. The lease alone keeps {lease.peak_active} active at most and refuses "
      f"nothing; with both, {both.refused / both.starts:.1%} of starts are refused.")
assert s1_total > 200 and admit.peak_active <= 100 and lease.refused == 0

# %% [markdown]
# **Answer.** (Full-size run: 12,000 runs.) A cap on finished runs is no bound when runs
# die unfinished: the replica's "200" held 2,666 runs, 2,476 of them active and dead,
# and would grow forever. Admission control makes the bound real (100 active at most)
# but alone it converts dead runs into refused work: once they fill `max_active`, 96% of
# starts are refused. The lease is what frees the slots: 2,415 dead runs were failed after
# 300 s and left through the TTL and cap like any finished run, with no start refused and
# at most 131 active. With both, active runs never pass 100 and 8% of starts are refused
# (when live long runs fill the slots). Use both: the lease as the cure, admission control
# as the guarantee that holds whatever the workload does.
