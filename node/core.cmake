# The node library (everything but main) and the chatnode executable.
add_library(chatnode_core STATIC
    config.c ratelimit.c server.c loop.c conn.c registry.c dispatch.c delivery.c metrics.c push.c presence.c links.c usercache.c jwt.c
    admin.c admin_cmds.c admin_ratelimit.c admin_keys.c handle_auth.c handle_prekeys.c handle_send.c handle_misc.c handle_presence.c handle_devices.c
    handle_groups.c handle_group_send.c handle_media.c handle_history.c)
target_link_libraries(chatnode_core PUBLIC chatnode_transport chatstore chatcrypto chatproto
                      chatcommon PkgConfig::UV PkgConfig::INIH PkgConfig::JANSSON m)
cn_warnings(chatnode_core)

add_executable(chatnode main.c)
target_link_libraries(chatnode PRIVATE chatnode_core)
cn_warnings(chatnode)
install(TARGETS chatnode RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
