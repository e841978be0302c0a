# End-to-end acceptance tests of issues 3 and 4: real chatnode and
# chatclient processes, Debian's python3 (standard library only), label
# integration. Issue 4 (conversations): groups (3 members with one
# offline; 200 members), devices (two devices, history on a linked
# device), media (an interrupted 20 MiB upload resumed), presence,
# group keys (a device linked late reads the group via a sender key request).
foreach(t exchange no_plaintext chat groups devices media presence group_keys)
    add_test(NAME e2e_${t}
             COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_${t}.py
                     $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient>)
    set_tests_properties(e2e_${t} PROPERTIES LABELS integration TIMEOUT 600)
endforeach()
