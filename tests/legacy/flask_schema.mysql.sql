-- The earlier back-end's schema on MySQL/MariaDB: what Flask-SQLAlchemy's db.create_all()
-- emits for its two models (Danielrp551/sistema_ocu_predict_back, src/models/user_model.py
-- and history_model.py at 2bfa984), compiled with SQLAlchemy's MySQL dialect.
-- tests/support/legacy.py creates these tables to test `ocupredict import-legacy`.

CREATE TABLE users (
    id INTEGER NOT NULL AUTO_INCREMENT,
    email VARCHAR(120) NOT NULL,
    password VARCHAR(200) NOT NULL,
    name VARCHAR(100),
    is_verified BOOL,
    verification_code VARCHAR(50),
    verification_code_expiration DATETIME,
    created_at DATETIME,
    PRIMARY KEY (id),
    UNIQUE (email)
);

CREATE TABLE prediction_history (
    id INTEGER NOT NULL AUTO_INCREMENT,
    user_id INTEGER NOT NULL,
    image_filename VARCHAR(200) NOT NULL,
    image_s3_key VARCHAR(300),
    predicted_class_name VARCHAR(100) NOT NULL,
    probabilities VARCHAR(500) NOT NULL,
    doctor_feedback VARCHAR(50),
    created_at DATETIME,
    PRIMARY KEY (id),
    FOREIGN KEY(user_id) REFERENCES users (id)
);
