cn_unit_test(node http LIBS chatnode_transport)
cn_unit_test(node ws LIBS chatnode_transport)
cn_unit_test(node tls LIBS chatnode_transport)
cn_unit_test(node config LIBS chatnode_core)
