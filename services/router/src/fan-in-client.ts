import type { LeaseStreamResponse } from "@codeq/proto";
import { Channel } from "@codeq/server-kit";

/**
 * Answers to the client queued and not taken by the transport, with its withdrawals
 * not answered yet, at most, before its stream is read no further (HTTP/2 flow
 * control then holds it back): a client that sends without reading its answers does
 * not have them pile up in the router. Reading goes on once fewer than half are.
 */
const MAX_QUEUED_ANSWERS = 64;
/**
 * Messages queued for the client and not taken by the transport, at most, before the
 * router reads its shard streams no further: a client that reads slowly holds the
 * shards' pushes back in their transport (and each shard then leases no more), rather
 * than have its credits' tasks sit leased in the router's memory, their lease clock
 * running. Reading goes on as soon as fewer are queued.
 */
const MAX_QUEUED_OUT = 16;

/**
 * The client's side of a LeaseStream fanned in by the router (FanInSession): what is
 * queued for it, and the pace at which its requests and the shards' pushes are read.
 * Its requests are read no further while it has too many settlements unanswered or
 * answers untaken; the shard streams are read no further while it has not taken what
 * is queued for it (`backedUp`).
 */
export class ClientSide {
  private readonly out = new Channel<LeaseStreamResponse>();
  /** Answers queued for the client and not taken by the transport yet (MAX_QUEUED_ANSWERS). */
  private readonly answersOut = new Set<LeaseStreamResponse>();
  /** Shard streams' reads held back while the client's queue is full (MAX_QUEUED_OUT). */
  private legsHeld: (() => void)[] = [];
  /** Resolves the wait of `waitForRoom` for fewer unanswered settlements, if it waits. */
  private roomToRead: (() => void) | undefined;
  /** Client requests with settlements not yet answered (the drain waits for them). */
  private answeringNow = 0;
  /** Called when no client request is left unanswered (`settlementsAnswered` waits for it). */
  private allAnswered: (() => void) | undefined;
  /** Their acks, nacks and extends: the client's stream is not read while there are too many. */
  private unanswered = 0;

  /**
   * `maxUnanswered`: acks, nacks and extends left unanswered beyond which the client's
   * requests are not read. `answersPending`: answers owed and not queued yet (the
   * client's withdrawals not answered), counted as queued.
   */
  constructor(
    private readonly maxUnanswered: number,
    private readonly answersPending: () => number,
  ) {}

  /** What goes to the client, in order; each message taken is to be told (`taken`). */
  messages(): AsyncIterable<LeaseStreamResponse> {
    return this.out;
  }

  /** The transport took `message`: reading may go on. */
  taken(message: LeaseStreamResponse): void {
    if (this.answersOut.delete(message)) this.readOnIfRoom();
    if (this.legsHeld.length > 0 && !this.backedUp) this.releaseLegs();
  }

  /** Queues a message for the client that answers none of its requests (a push, Subscribed). */
  push(message: LeaseStreamResponse): void {
    this.out.push(message);
  }

  /** Queues an answer to one of the client's requests. */
  answer(message: LeaseStreamResponse): void {
    this.answersOut.add(message);
    this.out.push(message);
  }

  /** Messages queued for the client and not taken by the transport. */
  get queued(): number {
    return this.out.queued;
  }

  /** Takes the messages not taken yet for which `which` holds out of the queue. */
  takeQueuedWhere(which: (message: LeaseStreamResponse) => boolean): LeaseStreamResponse[] {
    return this.out.takeQueuedWhere(which);
  }

  /** The client has not taken what is queued for it: its shard streams are read no further. */
  get backedUp(): boolean {
    return this.out.queued >= MAX_QUEUED_OUT;
  }

  /** Resolves once the shard streams are read on (`backedUp` no more, or the stream ended). */
  heldBack(): Promise<void> {
    return new Promise<void>((resume) => this.legsHeld.push(resume));
  }

  /** Reads on every shard stream held back by `backedUp`. */
  releaseLegs(): void {
    const held = this.legsHeld;
    this.legsHeld = [];
    for (const resume of held) resume();
  }

  /**
   * Whether the client's next request is read: its settlements unanswered and its
   * answers queued (with those owed) are under their bounds, the latter under half of
   * MAX_QUEUED_ANSWERS, or all of it when `full` (reading stops at it, and goes on
   * under half of it).
   */
  roomForMore(full = false): boolean {
    const answers = full ? MAX_QUEUED_ANSWERS : MAX_QUEUED_ANSWERS / 2;
    return (
      this.unanswered < this.maxUnanswered && this.answersOut.size + this.answersPending() < answers
    );
  }

  /** Resolves once there is room to read the client's next request (`roomForMore`), or it ended. */
  waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => (this.roomToRead = resolve));
  }

  /** Resumes reading the client's requests, if it waits and there is room now. */
  private readOnIfRoom(): void {
    if (this.roomToRead && this.roomForMore()) {
      this.roomToRead();
      this.roomToRead = undefined;
    }
  }

  /** Client requests with settlements not yet answered. */
  get answering(): number {
    return this.answeringNow;
  }

  /** A client request with `items` settlements is on its way to the shards. */
  asked(items: number): void {
    this.answeringNow++;
    this.unanswered += items;
  }

  /** A client request's `items` settlements are answered. */
  answered(items: number): void {
    this.answeringNow--;
    this.unanswered -= items;
    if (this.answeringNow === 0) this.allAnswered?.();
    this.readOnIfRoom();
  }

  /** Resolves once no client request with settlements is left unanswered, or after `ms`. */
  async settlementsAnswered(ms: number): Promise<void> {
    if (this.answeringNow === 0) return;
    let bound: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.allAnswered = resolve;
      bound = setTimeout(resolve, ms);
    });
    clearTimeout(bound);
    this.allAnswered = undefined;
  }

  /**
   * The session ended: the waits for room end, and the stream to the client ends
   * (with `error`, if any) after what is queued for it.
   */
  end(error: unknown): void {
    this.roomToRead?.();
    this.releaseLegs();
    if (error) this.out.fail(error);
    else this.out.close();
  }
}
