"""`python -m torch.distributed.run ... tests/dist_entry.py ARGS`: the real vltbench CLI, with test-only
instrumentation for tests/test_dist.py, chosen by environment variables:

VLTBENCH_TEST_LOG_IDS=DIR   each rank appends "K seed cfg_scale: sample ids" of every generate() call to DIR/rank<R>.txt
VLTBENCH_TEST_FAIL=R:WHERE:N:HOW   on rank R, the (N+1)-th call of WHERE (generate | dit, the DiT loss)
                            exits the process at once (HOW=exit, as a crash or kill) or raises (HOW=raise)
"""

import os

RANK = os.environ.get("RANK", "0")


def _instrument():
    from vltbench.evaluation import generate
    from vltbench.training import loops as train

    log_dir = os.environ.get("VLTBENCH_TEST_LOG_IDS")
    if log_dir:
        orig_generate = generate.generate

        def logged(bundle, k, ids, seed, sampler, cfg_scale, *rest, **kw):
            with open(os.path.join(log_dir, f"rank{RANK}.txt"), "a") as f:
                f.write(f"{k} {seed} {cfg_scale}: {' '.join(map(str, ids.tolist()))}\n")
            return orig_generate(bundle, k, ids, seed, sampler, cfg_scale, *rest, **kw)

        generate.generate = logged
        # the guidance search samples its base grid's scales in one trajectory (generate_scales)
        from vltbench.evaluation import guidance
        orig_scales = guidance.generate_scales

        def logged_scales(bundle, k, ids, seed, sampler, scales, *rest, **kw):
            with open(os.path.join(log_dir, f"rank{RANK}.txt"), "a") as f:
                for w in scales:
                    f.write(f"{k} {seed} {w}: {' '.join(map(str, ids.tolist()))}\n")
            return orig_scales(bundle, k, ids, seed, sampler, scales, *rest, **kw)

        guidance.generate_scales = logged_scales
    fail = os.environ.get("VLTBENCH_TEST_FAIL")
    if fail:
        rank, where, n, how = fail.split(":")
        if rank == RANK:
            module, name = {"generate": (generate, "generate"), "dit": (train, "flow_loss")}[where]
            orig, calls = getattr(module, name), [0]

            def failing(*args, **kwargs):
                calls[0] += 1
                if calls[0] > int(n):
                    if how == "exit":
                        os._exit(13)
                    raise RuntimeError(f"injected failure in {where}")
                return orig(*args, **kwargs)

            setattr(module, name, failing)


_instrument()
from vltbench.cli import main  # noqa: E402

main()
