"""The environment presets (where the pipeline runs) and experiment presets (how big it is).

Presets are explicit dicts of dotted keys; add a preset by adding an entry.
"""

from __future__ import annotations

from alignpipe.config.runner_args import IN_PROCESS_RUNNER

ENV_PRESETS: dict[str, dict[str, object]] = {
    "local": {
        "runner.beam_args": (f"--runner={IN_PROCESS_RUNNER}",),
        "runner.task_retries": 0,  # a local failure is a bug or bad input: retrying only delays it
        "train.strategy": "default",
    },
    # Vertex AI Pipelines: Beam on Dataflow from inside the scrape and filter tasks (its options
    # from `runner.*`, `beam_pipeline_args`), a shared MLflow server (`tracking.tracking_uri`,
    # required), every path a gs:// URI under `runner.pipeline_root`; training as a custom job on
    # the experiment's slice (`runner.accelerator`), whose backend and strategy it implies.
    "vertex": {
        "runner.beam_args": ("--runner=DataflowRunner", "--experiments=use_runner_v2"),
        "runner.train_in_custom_job": True,
        "register.vertex_model_registry": True,
    },
}

EXPERIMENT_PRESETS: dict[str, dict[str, object]] = {
    # The recipe as published: EfficientNet-B7 + BERT-Base, 640-d, batch 16k.
    # Unsafe content: the paper drops pornographic images (image rules image_unsafe / image_nsfw),
    # but no preset can switch them on: the blocklist and the classifier are the deployment's to
    # supply (filter.unsafe_image_blocklist, filter.nsfw_image_scorer); a paper run should set one.
    # The alt-text word list (filter.unsafe_alt_words) is COYO-700M's addition, not the paper's: off.
    # On Vertex AI: a TPU v5p slice of 128 chips (4x4x8, 32 VMs), 128 examples per chip, about
    # 72 of a chip's 95 GB (docs/training.md, "The paper preset's slice").
    "paper": {
        "runner.accelerator": "tpu-v5p",
        "runner.accelerator_chips": 128,
    },
    # A CPU demo that learns in minutes on the generated mini-web (README.md).
    "tiny": {
        "runner.accelerator": "cpu",  # on Vertex AI, one CPU VM
        "runner.accelerator_chips": 1,
        "scrape.max_pages": 500,
        # Filters: the paper's values except where they assume web scale or 289 px crops; nothing
        # here depends on the size of one data set (docs/align.md, "Data: filtering").
        # <= 32 px is icon size (16 / 24 / 32 px) and more than 2x upsampling to the 64 px crop.
        "filter.min_image_short_side": 32,
        # The paper's 1000 needs web-scale re-posting to bind; on one site an image under more
        # than 10 distinct alt-texts (the paper's own reuse bound, for alts) is an example or
        # placeholder image whose alts describe their pages, or a page in > 10 translations.
        "filter.max_alts_per_image": 10,
        # max_images_per_alt 10 and the rare-token rule (top-100M, no word share) are the
        # paper's: both mean the same at any size, and below millions of alt-texts no token count
        # tells a junk token from a real word seen once, so no token is rare there.
        "filter.num_shards": 2,
        # A 64 px model needs no more than this: decoding a stored 96 px image costs a fraction
        # of a web-sized one, and the input pipeline keeps up with the step (docs/results.md).
        "scrape.resize_mode": "keep_ratio",
        "scrape.image_size": 96,
        # The recipe that learns in minutes (docs/results.md, "The tiny recipe"): EfficientNetV2's
        # fused-MBConv stacks, no stochastic depth, AdamW at 1e-3, temperature from 0.1.
        "model.image_encoder": "efficientnetv2_scaled",
        "model.image_width_coefficient": 0.5,
        "model.image_depth_coefficient": 0.25,
        "model.image_dropout": 0.0,
        "model.image_size": 64,
        "model.image_resize": 72,
        "model.text_layers": 2,
        "model.text_hidden_dim": 128,
        "model.text_heads": 8,
        "model.text_intermediate_dim": 256,
        "model.max_text_tokens": 24,
        "model.vocab_size": 1000,
        "model.embed_dim": 128,
        "train.batch_size": 128,
        "train.steps": 700,
        "train.warmup_steps": 50,
        "train.optimizer": "adamw",
        "train.learning_rate": 1e-3,
        "train.weight_decay": 1e-4,
        # From the paper's 1.0 the first few hundred steps only lower the temperature; from 0.1
        # (CLIP starts at 0.07) learning starts at once, and the temperature still learns.
        "train.temperature_init": 0.1,
        "train.temperature_lr_multiplier": 10.0,
        "train.random_flip": False,  # captions name left/right positions
        "train.shuffle_buffer": 4096,
        "train.log_every_steps": 20,
        "train.checkpoint_every_steps": 100,
        "eval.prompt_templates": ("a {}.", "a picture of a {}.", "an image with a {}."),
        "eval.batch_size": 128,
    },
}
