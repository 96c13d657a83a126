# Rails-style session writes with redis-rb (Debian ruby-redis), the way
# redis-session-store and redis-actionpack talk to Redis: SETEX, GET, and
# MULTI with SETNX and EXPIRE. Checks directly in Redis that the values
# are envelopes. usage: ruby rails_store.rb PROXY_PORT REDIS_PORT
require "redis"
require "securerandom"

proxy = Redis.new(port: Integer(ARGV[0]))
direct = Redis.new(port: Integer(ARGV[1]))
canary = "CANARY-#{SecureRandom.hex(8)}"
checks = 0
check = lambda do |cond, what|
  abort("FAIL #{what}") unless cond
  checks += 1
end
sealed = ->(v) { v.is_a?(String) && v.b.start_with?("\x00RE\x01".b) }

sid = SecureRandom.hex(16)
key = "rack:session:#{sid}"
check.(proxy.setex(key, 3600, Marshal.dump({ "user_id" => 42, "canary" => canary })) == "OK", "SETEX")
check.(Marshal.load(proxy.get(key))["user_id"] == 42, "GET opens")
check.(sealed.(direct.get(key)), "SETEX value sealed in Redis")
check.(direct.ttl(key) > 3500, "TTL")
key2 = "rack:session:#{SecureRandom.hex(16)}"
res = proxy.multi do |tx|
  tx.setnx(key2, Marshal.dump({ "flash" => canary }))
  tx.expire(key2, 600)
end
check.(res == [true, true], "MULTI with SETNX and EXPIRE: #{res.inspect}")
check.(Marshal.load(proxy.get(key2))["flash"] == canary, "SETNX value opens")
check.(sealed.(direct.get(key2)), "SETNX value sealed in Redis")
direct.scan_each(count: 1000) do |k|
  v = direct.type(k) == "string" ? direct.get(k).to_s : ""
  check.(!v.b.include?(canary.b), "canary in #{k}")
end
puts "ruby: #{checks} checks passed (SETEX, GET, MULTI with SETNX and EXPIRE)"
