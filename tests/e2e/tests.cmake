# End-to-end acceptance tests of issue 3: real chatnode and chatclient
# processes, Debian's python3 (standard library only), label integration.
foreach(t exchange no_plaintext chat)
    add_test(NAME e2e_${t}
             COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_${t}.py
                     $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient>)
    set_tests_properties(e2e_${t} PROPERTIES LABELS integration TIMEOUT 600)
endforeach()
