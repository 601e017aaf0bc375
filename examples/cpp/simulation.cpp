// A toy "detector simulation" that embeds jetgen: an event loop asks a trained flow for jets
// (of a given mass when the flow is mass-conditioned), checks their physical sanity (pT
// fractions sum to <= ~1, masks consistent) and prints a summary. Build (see README "Embedding in C/C++"):
//   g++ -std=c++17 -I../../include simulation.cpp ../../target/release/libjetgen.a -lm -lpthread -ldl
// Run: ./simulation RUN_DIR [events]
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "jetgen.h"

namespace {

// RAII owner of a jetgen model; errors become exceptions on the C++ side.
class Generator {
  public:
    explicit Generator(const std::string &run_dir) {
        jetgen_model *m = nullptr;
        if (jetgen_model_load(run_dir.c_str(), JETGEN_DEVICE_AUTO, &m) != JETGEN_OK)
            throw std::runtime_error(std::string("jetgen: ") + jetgen_last_error());
        model_.reset(m);
        size_t p = 0;
        jetgen_model_num_particles(model_.get(), &p);
        particles_ = p;
        jetgen_model_conditions(model_.get(), &with_mass_, &with_n_);
        family_ = jetgen_model_family(model_.get());
    }
    size_t particles() const { return particles_; }
    const std::string &family() const { return family_; }
    bool mass_conditioned() const { return with_mass_ != 0; }
    bool multiplicity_conditioned() const { return with_n_ != 0; }
    // one jet per requested relative mass m/pT (mass-conditioned flows); multiplicities are
    // passed only to flows conditioned on them
    void generate_with_mass(const std::vector<float> &mass, const std::vector<float> &mult, uint64_t seed,
                            std::vector<float> &parts, std::vector<float> &jets) const {
        parts.resize(mass.size() * particles_ * 4);
        jets.resize(mass.size() * 4);
        const float *n = multiplicity_conditioned() ? mult.data() : nullptr;
        if (jetgen_model_generate_conditional(model_.get(), mass.size(), seed, mass.data(), n, parts.data(),
                                              parts.size(), jets.data(), jets.size()) != JETGEN_OK)
            throw std::runtime_error(std::string("jetgen: ") + jetgen_last_error());
    }
    // n jets: particles [n][P][4] and jets [n][4], deterministic per seed
    void generate(size_t n, uint64_t seed, std::vector<float> &parts, std::vector<float> &jets) const {
        parts.resize(n * particles_ * 4);
        jets.resize(n * 4);
        if (jetgen_model_generate(model_.get(), n, seed, parts.data(), parts.size(), jets.data(), jets.size()) != JETGEN_OK)
            throw std::runtime_error(std::string("jetgen: ") + jetgen_last_error());
    }

  private:
    struct Free {
        void operator()(jetgen_model *m) const { jetgen_model_free(m); }
    };
    std::unique_ptr<jetgen_model, Free> model_;
    size_t particles_ = 0;
    int with_mass_ = 0, with_n_ = 0;
    std::string family_;
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s RUN_DIR [events]\n", argv[0]);
        return 2;
    }
    const int events = argc > 2 ? std::stoi(argv[2]) : 20;
    try {
        Generator gen(argv[1]);
        const size_t P = gen.particles();
        std::vector<float> parts, jets;
        double sum_mass = 0.0, sum_mult = 0.0;
        size_t bad = 0, total = 0;
        for (int event = 0; event < events; ++event) {
            const size_t n_jets = 2 + event % 3;  // a few jets per event
            if (gen.mass_conditioned()) {
                // the "physics process" asks for jets of given masses (and sizes)
                std::vector<float> mass(n_jets), mult(n_jets);
                for (size_t j = 0; j < n_jets; ++j) {
                    mass[j] = 0.04f + 0.02f * static_cast<float>((event + j) % 5);
                    mult[j] = static_cast<float>(15 + (event + j) % 15);
                }
                gen.generate_with_mass(mass, mult, 1000 + event, parts, jets);
            } else {
                gen.generate(n_jets, 1000 + event, parts, jets);
            }
            for (size_t j = 0; j < n_jets; ++j, ++total) {
                double pt_sum = 0.0;
                int mult = 0;
                for (size_t k = 0; k < P; ++k) {
                    const float *q = &parts[(j * P + k) * 4];
                    const bool masked = q[3] == 0.0f;
                    if (masked && (q[0] != 0.0f || q[1] != 0.0f || q[2] != 0.0f)) ++bad;
                    if (!masked) {
                        pt_sum += q[2];
                        ++mult;
                    }
                }
                // pT fractions of the constituents sum to about 1 (generated jets: allow 20 %)
                if (mult != static_cast<int>(jets[j * 4 + 3]) || !std::isfinite(pt_sum) || pt_sum > 1.2) ++bad;
                sum_mass += jets[j * 4 + 2];
                sum_mult += mult;
            }
        }
        std::printf("jetgen %s, %s model: %d events, %zu jets (%s), mean m/pT %.4f, mean multiplicity %.1f, %zu inconsistent\n",
                    jetgen_version(), gen.family().c_str(), events, total,
                    gen.mass_conditioned() ? "given masses" : "unconditional",
                    sum_mass / total, sum_mult / total, bad);
        return bad == 0 ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
