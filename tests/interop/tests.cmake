# The independent Node.js client (issue 3): ws + protobufjs + libsodium-wrappers
# against a real chatnode and the C chatclient. Label "interop".
add_test(NAME interop_node_client
         COMMAND /bin/sh ${CMAKE_CURRENT_SOURCE_DIR}/interop/run.sh
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient>)
set_tests_properties(interop_node_client PROPERTIES LABELS interop TIMEOUT 300)
