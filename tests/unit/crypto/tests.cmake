cn_unit_test(crypto identity LIBS chatcrypto)
target_compile_definitions(test_crypto_identity
                           PRIVATE CN_VECTORS_DIR="${CMAKE_SOURCE_DIR}/tests/vectors")
cn_unit_test(crypto transcript LIBS chatcrypto)
foreach(t vectors)
    cn_unit_test(crypto ${t} LIBS chatcrypto SOURCES unit/crypto/vec_util.c)
    target_compile_definitions(test_crypto_${t}
                               PRIVATE CN_VECTORS_DIR="${CMAKE_SOURCE_DIR}/tests/vectors")
endforeach()
foreach(t ratchet codec senderkey media atrest keyring)
    cn_unit_test(crypto ${t} LIBS chatcrypto)
endforeach()
