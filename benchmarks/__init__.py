"""The project's benchmarks, each a module run from the repository root (results: ``benchmarks/results/``).

    python -m benchmarks.sample_efficiency ...  # the multi-seed study: amf vs uniform and the baselines
    python -m benchmarks.forgetting ...         # forgetting of the tasks never selected, per isolation mode
    python -m benchmarks.faults ...             # SIGKILL a run anywhere, resume it: nothing lost or duplicated
    python -m benchmarks.selection_cost ...     # what amf selection costs next to the policy's own passes
    python -m benchmarks.kernel_rank ...        # what the amf kernel sees of the generalist's errors, its rank

Each takes ``--help`` and ``--dry-run`` (what it would run and write, without running it);
``common`` holds what they share.
"""
