"""Run inside Blender (``blender -b --factory-startup --python tests/blender_import.py -- FILE.glb``):
import the GLB and print what Blender made of it as one JSON line after RESULT."""
import json
import sys

import numpy

numpy.bool = bool   # Debian's Blender 3.4 glTF add-on still uses np.bool, gone since numpy 1.24
import bpy  # noqa: E402

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[sys.argv.index("--") + 1])
out = {}
for ob in bpy.data.objects:
    entry = {"type": ob.type, "animated": bool(ob.animation_data and ob.animation_data.action)}
    if ob.type == "MESH":
        entry["height_m"] = ob.dimensions.z   # Blender's z is glTF's y
        keys = ob.data.shape_keys
        if keys:
            entry["shape_keys"] = {b.name: b.value for b in keys.key_blocks[1:]}   # after the Basis
            entry["keys_animated"] = bool(keys.animation_data and keys.animation_data.action)
    out[ob.name] = entry
print("RESULT " + json.dumps(out))
