/* Ring allreduce on SimGrid's star platform, in SimGrid's native C++ (S4U) API: the engine flyersim is
 * compared with in docs/performance.md ("Against SimGrid"). Built and run by experiments/simgrid/compare.py.
 *
 *   ring_star RANKS BYTES [--cfg=...]
 *
 * RANKS hosts, each with its own split-duplex 12.5 GB/s, 1 us link to one router (a star zone), as
 * tests/bench/star.toml describes it to flyersim. Rank i runs 2(RANKS-1) steps; in each it sends
 * BYTES/RANKS to rank i+1 and receives as much from rank i-1, and starts the next step once both are
 * done (the reduction costs nothing, as in flyersim's star). Prints the simulated time in seconds. */
#include <simgrid/s4u.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sg4 = simgrid::s4u;

static int ranks;
static double chunk;

static void rank_main(int me)
{
  sg4::Mailbox* inbox = sg4::Mailbox::by_name("rank-" + std::to_string(me));
  sg4::Mailbox* next  = sg4::Mailbox::by_name("rank-" + std::to_string((me + 1) % ranks));
  static int payload;
  for (int step = 0; step < 2 * (ranks - 1); step++) {
    sg4::CommPtr send = next->put_async(&payload, static_cast<uint64_t>(chunk));
    inbox->get<int>();
    send->wait();
  }
}

int main(int argc, char** argv)
{
  sg4::Engine engine(&argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s RANKS BYTES [--cfg=...]\n", argv[0]);
    return 2;
  }
  ranks = std::atoi(argv[1]);
  chunk = std::atof(argv[2]) / ranks;

  sg4::NetZone* zone = sg4::create_star_zone("star");
  std::vector<sg4::Host*> hosts;
  for (int i = 0; i < ranks; i++) {
    std::string name = "host-" + std::to_string(i);
    sg4::Host* host = zone->create_host(name, 1e9);
    sg4::Link* link = zone->create_split_duplex_link("link-" + name, 12.5e9)->set_latency(1e-6)->seal();
    zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr,
                    {{link, sg4::LinkInRoute::Direction::UP}}, true);
    hosts.push_back(host);
  }
  zone->seal();
  for (int i = 0; i < ranks; i++)
    sg4::Actor::create("rank-" + std::to_string(i), hosts[i], rank_main, i);
  engine.run();
  std::printf("%.17g\n", sg4::Engine::get_clock());
  return 0;
}
