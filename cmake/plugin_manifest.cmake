# Write a plugin's manifest (agent/plugin/manifest.h) from the built file:
# cmake -DSO=path -DNAME=name -DCLASS=class -DOUT=manifest.json -P this
file(SHA256 ${SO} digest)
get_filename_component(file ${SO} NAME)
file(WRITE ${OUT} "{\"name\": \"${NAME}\", \"class\": \"${CLASS}\", \"abi\": 1,\n \"file\": \"${file}\",\n \"sha256\": \"${digest}\"}\n")
