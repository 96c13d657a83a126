<?php
// One request of a PHP app whose sessions live in Redis through respseal:
// phpredis's session handler, with session locking on. Counts views.
// usage: php -d ... session.php PROXY_PORT SESSION_ID CANARY
[$_, $port, $sid, $canary] = $argv;
ini_set('session.save_handler', 'redis');
ini_set('session.save_path', "tcp://127.0.0.1:$port");
ini_set('redis.session.locking_enabled', '1');
ini_set('redis.session.lock_retries', '50');
ini_set('redis.session.lock_wait_time', '20000');
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
session_id($sid);
if (!session_start()) {
    fwrite(STDERR, "session_start failed\n");
    exit(1);
}
$_SESSION['views'] = ($_SESSION['views'] ?? 0) + 1;
$_SESSION['canary'] = $canary;
echo $_SESSION['views'], "\n";
session_write_close();
