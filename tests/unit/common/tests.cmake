cn_unit_test(common buf LIBS chatcommon)
cn_unit_test(common arena LIBS chatcommon)
