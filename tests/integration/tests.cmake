# Integration tests: real chatnode processes on 127.0.0.1:0 with temporary
# data dirs (STYLE.md, Tests). Each executable is a cmocka group; every
# test kills what it started in its teardown.
add_library(cn_integ_harness STATIC integration/harness.c)
target_link_libraries(cn_integ_harness PUBLIC chatcrypto chatproto chatcommon OpenSSL::SSL
                      OpenSSL::Crypto PkgConfig::CMOCKA)
target_compile_definitions(cn_integ_harness PRIVATE CN_CHATNODE_BIN="$<TARGET_FILE:chatnode>")
add_dependencies(cn_integ_harness chatnode)
cn_warnings(cn_integ_harness)

foreach(name protocol delivery limits mailbox_pump usercache)
    add_executable(test_integration_${name} integration/test_${name}.c)
    target_link_libraries(test_integration_${name} PRIVATE cn_integ_harness)
    cn_warnings(test_integration_${name})
    add_test(NAME integration_${name} COMMAND test_integration_${name})
    set_tests_properties(integration_${name} PROPERTIES
        LABELS integration
        TIMEOUT 300
        ENVIRONMENT "CHATNODE_BIN=$<TARGET_FILE:chatnode>")
endforeach()
