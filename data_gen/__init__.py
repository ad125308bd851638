"""SpatialLadder-26k-style data from ScanNet, ScanNet++ or ARKitScenes scenes, or from
procedural scenes in the ScanNet layout (numpy only).

    from data_gen import synthetic, build
    synthetic.write_scenes("scenes", n_scenes=8, seed=0, n_frames=24, color_size=(640, 480))
    build.build_dataset("scenes", "data", seed=0, heldout=1)

CLI: python -m data_gen synth ... / build [--source scannetpp|arkitscenes] [--dry-run] ...
(docs/data_gen.md).
"""
