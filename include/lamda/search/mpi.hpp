// lamda/search/mpi.hpp: a search on many machines (docs/scale.md). Under `mpirun -n N` (or
// `srun`), rank 0 runs the search -- proposer, screening, predictor, dedup, journal, report --
// and ranks 1..N-1 measure and proxy-train candidates (loop.hpp's run_candidate) on their own
// CPU or board and send the records back:
//
//   lamda::MpiSession mpi;                          // MPI_Init only when started by mpirun/srun
//   if (mpi.rank() > 0) { lamda::mpi_serve(task, worker_setup, out_dir); return; }
//   o.runner = std::make_shared<lamda::MpiRunner>(mpi);   // search/generate.hpp's GenerateOptions
//   lamda::generate(task, proposer, trainer, o);
//   o.runner->stop_workers();                       // (also done by its destructor)
//
// Messages: point-to-point on MPI_COMM_WORLD, a uint64 size first and then that many bytes of
// search/parallel.hpp's runner_wire JSON; a size over mpi_max_message_bytes is an MpiError
// before anything is allocated. Waiting polls (MPI_Iprobe) with 1 ms sleeps: a blocked
// MPI_Recv spins a core in Open MPI, which would steal it from training on the same node.
// Faults: a worker's exception while evaluating becomes a Failed record (run_candidate); a rank
// that dies ends the job (Open MPI's default), after every record rank 0 received was journaled
// (fsync per record): `--resume` continues, with any N. Measurements on a node never overlap
// trainings on that node (NodeGate, keyed by the output directory's path).
// Needs LAMDA_WITH_MPI (CMake: found Open MPI, target lamda_mpi) and LAMDA_WITH_LATENCY.
#ifndef LAMDA_SEARCH_MPI_HPP
#define LAMDA_SEARCH_MPI_HPP

#if !defined(LAMDA_WITH_MPI) || !defined(LAMDA_WITH_LATENCY)
#error "lamda/search/mpi.hpp needs LAMDA_WITH_MPI (Open MPI: apt-get install libopenmpi-dev) and LAMDA_WITH_LATENCY"
#else

// Only MPI's C API is used: its deprecated C++ bindings do not compile warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <time.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../exception.hpp"
#include "parallel.hpp"

namespace lamda {

class MpiError : public Exception {
public:
    using Exception::Exception;
};

// The largest message either side accepts (a record: DSL text, diagnostics and notes are bounded
// well below this by the parser's and the journal's limits).
inline constexpr std::uint64_t mpi_max_message_bytes = std::uint64_t{16} << 20;

// True when this process was started by an MPI launcher (Open MPI's mpirun, Slurm's srun, PMIx).
inline bool launched_by_mpi() noexcept {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"})
        if (std::getenv(v)) return true;
    return false;
}

// MPI for the life of the object: initialised only when launched by mpirun/srun (else rank 0
// of 1, and no MPI call is made), finalised by the destructor.
class MpiSession {
public:
    MpiSession() {
        if (!launched_by_mpi()) return;
        int provided = 0;
        if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            throw MpiError(Error(ErrorKind::io, "MPI_Init_thread failed"));
        active_ = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
    ~MpiSession() {
        if (active_) MPI_Finalize();
    }
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    bool active() const noexcept { return active_; }
    // Ends every rank of the job (after an error on one of them: the others would wait forever).
    [[noreturn]] void abort(int code) const {
        if (active_) MPI_Abort(MPI_COMM_WORLD, code);
        std::exit(code);
    }

private:
    bool active_ = false;
    int rank_ = 0, size_ = 1;
};

namespace mpi_detail {

enum Tag : int { job_tag = 1, result_tag = 2, stop_tag = 3 };

inline void check(int rc, const char* what) {
    if (rc != MPI_SUCCESS) throw MpiError(Error(ErrorKind::io, std::string("MPI: ") + what + " failed"));
}

inline void send(const std::string& body, int dest, int tag) {
    if (body.size() > mpi_max_message_bytes)
        throw MpiError(Error(ErrorKind::limit, "MPI: a message of " + std::to_string(body.size()) + " bytes to rank " +
                                                   std::to_string(dest) + " is over the limit of " +
                                                   std::to_string(mpi_max_message_bytes)));
    std::uint64_t n = body.size();
    check(MPI_Send(&n, 1, MPI_UINT64_T, dest, tag, MPI_COMM_WORLD), "MPI_Send");
    if (n > 0) check(MPI_Send(body.data(), static_cast<int>(n), MPI_CHAR, dest, tag, MPI_COMM_WORLD), "MPI_Send");
}

struct Message {
    int source = 0;
    int tag = 0;
    std::string body;
};

// The next message from `source` with `tag` (MPI_ANY_SOURCE / MPI_ANY_TAG allowed).
inline Message receive(int source, int tag) {
    MPI_Status st{};
    for (;;) {
        int flag = 0;
        check(MPI_Iprobe(source, tag, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
        if (flag) break;
        const timespec pause{0, 1000000};  // 1 ms
        ::nanosleep(&pause, nullptr);
    }
    Message m;
    m.source = st.MPI_SOURCE;
    m.tag = st.MPI_TAG;
    std::uint64_t n = 0;
    check(MPI_Recv(&n, 1, MPI_UINT64_T, m.source, m.tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    if (n > mpi_max_message_bytes)
        throw MpiError(Error(ErrorKind::limit, "MPI: rank " + std::to_string(m.source) + " announced a message of " +
                                                   std::to_string(n) + " bytes, over the limit of " +
                                                   std::to_string(mpi_max_message_bytes)));
    m.body.resize(static_cast<std::size_t>(n));
    if (n > 0)
        check(MPI_Recv(m.body.data(), static_cast<int>(n), MPI_CHAR, m.source, m.tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
              "MPI_Recv");
    return m;
}

}  // namespace mpi_detail

// Rank 0's side: hands screened candidates to ranks 1..N-1, one each at a time. `gate_key`
// (the output directory, as mpi_serve's): rank 0's own measurements (a task's "measure_on":
// "one_device") wait for this node's trainings to pause; "": they do not (a board measures).
class MpiRunner : public CandidateRunner {
public:
    explicit MpiRunner(const MpiSession& session, const std::string& gate_key = "") : size_(session.size()) {
        if (session.rank() != 0 || session.size() < 2)
            throw MpiError(Error(ErrorKind::usage, "MpiRunner: needs rank 0 of at least 2 ranks"));
        for (int r = size_ - 1; r >= 1; --r) free_.push_back(r);
        busy_.assign(static_cast<std::size_t>(size_), no_ticket);
        if (!gate_key.empty()) gate_ = std::make_shared<const NodeGate>(gate_key);
    }
    std::string search_side_name() const override { return "rank 0 @ " + node_name(); }
    void while_measuring(const std::function<void()>& timing) override {
        if (!gate_) return timing();
        const NodeGate::Hold hold = gate_->measuring();
        timing();
    }
    MpiRunner(const MpiRunner&) = delete;
    MpiRunner& operator=(const MpiRunner&) = delete;
    ~MpiRunner() override {
        try {
            stop_workers();
        } catch (...) {  // (a destructor: the job ends anyway)
        }
    }
    int slots() const override { return size_ - 1; }
    void submit(std::uint64_t ticket, const CandidateRecord& screened) override {
        if (free_.empty()) throw MpiError(Error(ErrorKind::internal, "MpiRunner: every rank is busy"));
        const int rank = free_.back();
        mpi_detail::send(runner_wire::encode(ticket, screened), rank, mpi_detail::job_tag);
        free_.pop_back();
        busy_[static_cast<std::size_t>(rank)] = ticket;
    }
    Done wait() override {
        if (static_cast<int>(free_.size()) == size_ - 1)
            throw MpiError(Error(ErrorKind::internal, "MpiRunner::wait: nothing in flight"));
        mpi_detail::Message m = mpi_detail::receive(MPI_ANY_SOURCE, mpi_detail::result_tag);
        const std::string where = "MPI message from rank " + std::to_string(m.source);
        if (m.source < 1 || m.source >= size_ || busy_[static_cast<std::size_t>(m.source)] == no_ticket)
            throw MpiError(Error(ErrorKind::internal, where + ": a result from a rank that has no candidate"));
        runner_wire::Decoded d = runner_wire::decode(m.body, where);
        if (d.ticket != busy_[static_cast<std::size_t>(m.source)])
            throw MpiError(Error(ErrorKind::internal, where + ": the result of ticket " + std::to_string(d.ticket) +
                                                          ", not of the candidate it was given"));
        busy_[static_cast<std::size_t>(m.source)] = no_ticket;
        free_.push_back(m.source);
        Done done;
        done.ticket = d.ticket;
        done.record = std::move(d.record);
        done.stage_seconds = d.stage_seconds;
        return done;
    }
    // Tells every worker to return from mpi_serve (once).
    void stop_workers() {
        if (stopped_) return;
        stopped_ = true;
        for (int r = 1; r < size_; ++r) mpi_detail::send(std::string(), r, mpi_detail::stop_tag);
    }

private:
    static constexpr std::uint64_t no_ticket = ~std::uint64_t{0};
    int size_;
    std::vector<int> free_;
    std::vector<std::uint64_t> busy_;  // by rank: the ticket it runs
    bool stopped_ = false;
    std::shared_ptr<const NodeGate> gate_;
};

// A worker rank's side: runs the candidates rank 0 sends until it says stop. `setup` measures
// (this CPU or this rank's board) and trains (this rank's trainer); measurements and trainings
// go through this node's NodeGate keyed by `gate_key` (the output directory). `lost` (optional)
// returns true when a measuring failure means the board is gone: this rank then throws (and the
// caller ends the job), leaving that candidate out of the journal for --resume. `local_measure`
// false (a board measures): measurements do not wait for this node's trainings.
inline void mpi_serve(const MpiSession& session, const Task& task, GenerateSetup setup, const std::string& gate_key,
                      const std::function<bool()>& lost = {}, bool local_measure = true) {
    if (task.measure_one_device) setup.measure = setup.measure_int8 = {};  // rank 0 measures every candidate
    auto gate = std::make_shared<const NodeGate>(gate_key);
    std::unique_ptr<Trainer> gated;
    const GenerateSetup s = gated_setup(std::move(setup), gate, gated, local_measure);
    const std::string name = "rank " + std::to_string(session.rank()) + " @ " + node_name();
    for (;;) {
        mpi_detail::Message m = mpi_detail::receive(0, MPI_ANY_TAG);
        if (m.tag == mpi_detail::stop_tag) return;
        if (m.tag != mpi_detail::job_tag)
            throw MpiError(Error(ErrorKind::internal, "MPI: unexpected message tag " + std::to_string(m.tag)));
        runner_wire::Decoded job = runner_wire::decode(m.body, "MPI message from rank 0");
        StageSeconds stages;
        CandidateRecord rec = run_candidate(task, std::move(job.record), s, &stages);
        if (lost && lost())
            throw MpiError(Error(ErrorKind::device, name + ": the board stopped answering: " + rec.reason +
                                                        "\nthe search stopped; run the same command with --resume "
                                                        "once the board answers again"));
        rec.evaluated_by = name;
        mpi_detail::send(runner_wire::encode(job.ticket, rec, &stages), 0, mpi_detail::result_tag);
    }
}

}  // namespace lamda

#endif  // LAMDA_WITH_MPI && LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_MPI_HPP
