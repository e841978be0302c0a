# Script-driven integration tests: real chatnode and chatclient processes,
# Debian's python3 (standard library only).
add_test(NAME integration_crash_recovery
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_crash_recovery.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient> 1000)
set_tests_properties(integration_crash_recovery PROPERTIES LABELS integration TIMEOUT 600)

add_test(NAME integration_invite
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_invite.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient> $<TARGET_FILE:chatadmin>)
set_tests_properties(integration_invite PROPERTIES LABELS integration TIMEOUT 120)

add_test(NAME integration_operations
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_operations.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient> $<TARGET_FILE:chatadmin>)
set_tests_properties(integration_operations PROPERTIES LABELS integration TIMEOUT 300)

add_test(NAME integration_jwt
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_jwt.py
                 $<TARGET_FILE:chatnode> $<TARGET_FILE:chatclient>)
set_tests_properties(integration_jwt PROPERTIES LABELS integration TIMEOUT 120)
