"""Loss-gradient embeddings φ(x) of a policy's action head: the amf kernel's machinery
(docs/method.md, "Kernel: loss-gradient embeddings").

φ is the gradient of the policy's own training loss w.r.t. the last weight layers of its action
head, from one forward and one short backward pass (``base.py``), projected by a fixed seeded
Gaussian matrix when raw_dim > dim (``projection.py``); ``last_layer.py`` gives the
features-only ablation kernel; ``kinds.py`` names the kernels and their default sizes without
importing torch. Which layer, loss and pseudo-target a policy uses is its family's business
(``lerobot_amf.families``, which builds embedders with ``make_embedder``): this package knows
no policy family.
"""
