-- +goose Up
-- Stock is reserved when an order is placed, not when it is accepted: an
-- order the stock cannot cover is refused when placed, and two orders
-- placed at once can never both take the last packs. stock_reserved says
-- whether this order holds its packs (rejection and cancellation give
-- them back); orders placed before this migration reserved only when
-- accepted, so only those past acceptance hold theirs.
ALTER TABLE marketplace.orders ADD COLUMN stock_reserved boolean NOT NULL DEFAULT false;
UPDATE marketplace.orders SET stock_reserved = true WHERE status IN ('accepted', 'shipped', 'delivered');

-- An order the distributor placed for a farmer may be cancelled by it
-- before it ships (the farmer changed their mind); its stock is released.
ALTER TABLE marketplace.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE marketplace.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('placed', 'accepted', 'rejected', 'cancelled', 'shipped', 'delivered'));

-- +goose Down
ALTER TABLE marketplace.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE marketplace.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('placed', 'accepted', 'rejected', 'shipped', 'delivered'));
ALTER TABLE marketplace.orders DROP COLUMN stock_reserved;
