cn_unit_test(proto records LIBS chatproto)
cn_unit_test(proto frames LIBS chatproto)
